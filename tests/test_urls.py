"""One URL classifier (engine.sources.remote.url_scheme): sources, stores and the weights probe agree on what a URL is."""
from engine.sources.remote import is_remote, url_scheme
from index.store.storefs import is_object_url, unsupported_scheme


def test_url_scheme_is_the_one_classifier():
    assert url_scheme("S3://bucket/key.mp4") == "s3"
    assert url_scheme("/videos/a.mp4") is None and url_scheme("videos/a:b.mp4") is None
    assert is_remote("https://host/v.mp4") and is_remote("gs://b/k") and not is_remote("ftp://host/v.mp4")
    assert not is_remote("clips/a.mp4")
    # a store lives on s3:// only: the same classifier, a narrower set of schemes
    assert is_object_url("S3://bucket/prefix/") and not is_object_url("gs://bucket/prefix/")
    assert not is_object_url("/tmp/store")
    assert unsupported_scheme("gs://bucket/prefix/").startswith("gs://bucket/prefix/: a store can be")
    assert unsupported_scheme("s3://bucket/p") is None and unsupported_scheme("/tmp/store") is None
