"""Object-storage sources (engine/sources/) against a real S3-compatible server: moto's server mode, started by a
fixture on a free loopback port. Listing, content ids equal to local ones and remembered by ETag, decoding from
ranged reads (frames identical to the local file, each byte fetched once, counted by a TCP proxy in front of
the server: tests/s3proxy.py), connections cut or stalled mid-object, the bounded spool, retries with backoff,
vanished / missing / replaced objects as error rows, and `bike tag s3://…` end to end."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from engine.sources import ranged, remote
from index.store import ids
from index.store.remoteids import RemoteIds
from jobs.errors import UsageError
from jobs.tag.sources import list_sources
from media import make_video, mp4_boxes, run_ffmpeg
from s3proxy import Proxy
from s3server import CREDS, moto_s3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "bike-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1:<free port> (tests/s3server.py), with a bucket of two real videos and noise."""
    with moto_s3(BUCKET) as srv:
        client = srv["client"]
        local = tmp_path_factory.mktemp("s3src")
        make_video(local / "a.mp4", seconds=2, fps=10, size=(64, 48), pattern="testsrc")
        make_video(local / "b.mkv", seconds=3, fps=10, size=(64, 48), pattern="testsrc")
        client.upload_file(str(local / "a.mp4"), BUCKET, "videos/a.mp4")
        client.upload_file(str(local / "b.mkv"), BUCKET, "videos/sub/b.mkv")
        client.put_object(Bucket=BUCKET, Key="videos/.hidden.mp4", Body=b"x")
        client.put_object(Bucket=BUCKET, Key="videos/notes.txt", Body=b"x")
        yield {**srv, "local": local}


def test_listing_a_prefix_a_glob_and_single_objects(s3):
    src = list_sources([f"s3://{BUCKET}/videos/"])
    assert src.videos == [f"s3://{BUCKET}/videos/a.mp4", f"s3://{BUCKET}/videos/sub/b.mkv"]
    assert src.skipped == Counter({"hidden": 1, "not video files (by extension)": 1})
    assert src.objects[src.videos[0]].size == (s3["local"] / "a.mp4").stat().st_size
    assert src.objects[src.videos[0]].etag                      # the cheap identity comes with the listing
    assert list_sources([f"s3://{BUCKET}/videos/**/*.mkv"]).videos == [f"s3://{BUCKET}/videos/sub/b.mkv"]
    one = list_sources([f"s3://{BUCKET}/videos/missing.mp4", f"s3://{BUCKET}/videos/a.mp4"])
    assert one.videos == [f"s3://{BUCKET}/videos/missing.mp4", f"s3://{BUCKET}/videos/a.mp4"]   # kept: error row later
    with pytest.raises(UsageError, match="no objects under this prefix"):
        list_sources([f"s3://{BUCKET}/nothing-here/"])


def test_list_files_may_name_objects(s3, tmp_path):
    (tmp_path / "list.txt").write_text(f"# remote\ns3://{BUCKET}/videos/a.mp4\n")
    assert list_sources([tmp_path / "list.txt"]).videos == [f"s3://{BUCKET}/videos/a.mp4"]


def test_content_id_equals_the_local_one_and_is_remembered_by_etag(s3, tmp_path):
    url = f"s3://{BUCKET}/videos/a.mp4"
    listed = list_sources([f"s3://{BUCKET}/videos/"]).objects
    r = RemoteIds(tmp_path, listed=listed)
    pending, err = r.identify(url)                  # new: not read on the driver, its decode task hashes it
    assert err is None and pending == remote.pending_id(url) and (r.hits, r.hashed) == (0, 0)
    from jobs.tag.decode import decode_video
    end = list(remote.decode_remote(url, decode_video, frames=8, window_s=10.0, size=32, resize=36))[-1]
    vid, streamed = end["streamed"]["content_id"], end["streamed"]
    assert end["error"] is None and vid == ids.video_id(str(s3["local"] / "a.mp4"))
    assert (streamed["size"], streamed["etag"]) == (listed[url].size, listed[url].etag)
    r.remember(url, streamed["size"], streamed["etag"], vid)
    assert r.hashed == 1 and r.save()
    again = RemoteIds(tmp_path, listed=listed)
    assert again.identify(url) == (vid, None) and (again.hits, again.hashed) == (1, 0)    # no byte read
    # a new upload under the same name has a new ETag: hashed again
    s3["client"].put_object(Bucket=BUCKET, Key="misc/changed.mp4", Body=b"one")
    r2 = RemoteIds(tmp_path, trust=False)    # --rehash: hashed on the driver
    first = r2.identify(f"s3://{BUCKET}/misc/changed.mp4")
    r2.save()
    assert RemoteIds(tmp_path).identify(f"s3://{BUCKET}/misc/changed.mp4") == first
    s3["client"].put_object(Bucket=BUCKET, Key="misc/changed.mp4", Body=b"two!")
    r3 = RemoteIds(tmp_path)
    second = r3.identify(f"s3://{BUCKET}/misc/changed.mp4")
    assert second == (remote.pending_id(f"s3://{BUCKET}/misc/changed.mp4"), None) and r3.hits == 0
    assert RemoteIds(tmp_path, trust=False).identify(url) == (vid, None)
    missing = RemoteIds(tmp_path).identify(f"s3://{BUCKET}/videos/missing.mp4")
    assert missing[0].startswith("path:") and missing[1] == "object not found"


def test_spool_holds_the_bytes_and_is_removed(s3, monkeypatch):
    url = f"s3://{BUCKET}/videos/sub/b.mkv"
    with remote.spooled(url) as path:
        assert open(path, "rb").read() == (s3["local"] / "b.mkv").read_bytes()
    assert not os.path.exists(path)
    monkeypatch.setenv("BIKE_SPOOL_MAX_GB", "0.000001")
    with pytest.raises(remote.RemoteError, match="larger than the local spool allows"):
        with remote.spooled(url):
            pass


def test_a_vanished_object_becomes_an_error_message_not_a_crash(s3):
    s3["client"].put_object(Bucket=BUCKET, Key="misc/gone.mp4", Body=(s3["local"] / "a.mp4").read_bytes())
    url = f"s3://{BUCKET}/misc/gone.mp4"
    assert list_sources([url]).objects[url].size                  # listed ...
    s3["client"].delete_object(Bucket=BUCKET, Key="misc/gone.mp4")  # ... then deleted before decoding
    from jobs.tag.decode import decode_video
    msgs = list(remote.decode_remote(url, decode_video, frames=8, window_s=10.0, size=32, resize=36))
    assert [m["kind"] for m in msgs] == ["head", "end"] and msgs[-1]["error"] == "object not found"


def test_decoding_a_remote_object_matches_decoding_the_file(s3):
    from jobs.tag.decode import decode_video
    kw = dict(frames=8, window_s=10.0, size=32, resize=36)
    got = [m for m in remote.decode_remote(f"s3://{BUCKET}/videos/a.mp4", decode_video, **kw)]
    want = list(decode_video(str(s3["local"] / "a.mp4"), **kw))
    assert len(got) == len(want) == 4                              # head, chunk, frames, end
    assert (got[2] == want[2]).all()


def test_a_dropped_transfer_resumes_at_the_byte_it_reached(s3, proxy):
    """--rehash's driver-side hash (content_id) through connections cut mid-answer: the same id, each byte
    fetched once."""
    url = f"s3://{BUCKET}/videos/sub/b.mkv"
    local = (s3["local"] / "b.mkv").read_bytes()
    proxy.cut_after, proxy.cuts = 1000, 2                   # the connection drops twice, mid-object
    assert remote.content_id(url) == ids.video_id(str(s3["local"] / "b.mkv"))
    assert proxy.cuts == 0 and len(local) <= proxy.answer_bytes < 2 * len(local) + 20_000


def test_throttling_is_retried_with_backoff_then_reported():
    from botocore.exceptions import ClientError
    slow = ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "GetObject")
    waits = []
    tries = iter([slow, slow, "ok"])

    def call():
        x = next(tries)
        if isinstance(x, Exception):
            raise x
        return x

    assert remote.retrying(call, "s3://b/k", sleep=waits.append) == "ok"
    assert len(waits) == 2 and waits[1] > waits[0] * 0.5             # exponential (with jitter)

    def always():
        raise slow
    with pytest.raises(remote.RemoteError, match="throttled by the server, still after"):
        remote.retrying(always, "s3://b/k", sleep=lambda s: None)
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    def deny():
        raise denied
    waits.clear()
    with pytest.raises(remote.RemoteError, match="access denied"):
        remote.retrying(deny, "s3://b/k", sleep=waits.append)
    assert waits == []                                                  # not retried


@pytest.mark.slow
def test_bike_tag_from_s3_then_rerun_reads_nothing(s3, tmp_path):
    """End to end in a subprocess (its own Ray, with the endpoint and credentials in its environment). New
    objects are read once, by their decode tasks; a copy under a second URL is tagged once, in the same run
    or a later one."""
    s3["client"].upload_file(str(s3["local"] / "b.mkv"), BUCKET, "copies/b-copy.mkv")
    s3["client"].upload_file(str(s3["local"] / "a.mp4"), BUCKET, "copies/a-copy.mp4")
    (tmp_path / "more.txt").write_text(f"s3://{BUCKET}/videos/missing.mp4\ns3://{BUCKET}/copies/b-copy.mkv\n")
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_ENDPOINT_URL")}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=ROOT, **CREDS)
    cmd = [sys.executable, "-m", "jobs.cli", "tag", f"s3://{BUCKET}/videos/", str(tmp_path / "more.txt"),
           "--store", str(store), "--endpoint", s3["endpoint"], "--model", "bike-tiny", "--random-init",
           "--lexicon", "hmdb51", "--labels", "dog,cat,surfing", "--no-progress"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 ok, 1 error" in run.stdout and "object not found" in run.stdout, run.stdout
    assert "1 same content as another listed file" in run.stdout           # b.mkv and its copy: tagged once
    assert "content ids: 3 files hashed, 0 unchanged" in run.stdout        # by the decode tasks, not the driver
    assert "objects read by the decode tasks: 3 (" in run.stdout and "in 3 GET requests (1.00x their size)" in run.stdout
    from index.store import Store

    def rows():
        con = Store(store).connect()
        return con.execute("SELECT path, status, error, num_clips, video_id FROM videos ORDER BY path").fetchall()
    first = rows()
    assert [r[:4] for r in first if "b.mkv" not in r[0] and "b-copy" not in r[0]] == [
        (f"s3://{BUCKET}/videos/a.mp4", "ok", None, 1), (f"s3://{BUCKET}/videos/missing.mp4", "error", "object not found", 0)]
    b_rows = [r for r in first if "b.mkv" in r[0] or "b-copy" in r[0]]
    assert len(b_rows) == 1 and b_rows[0][1:4] == ("ok", None, 1) and b_rows[0][4] == ids.video_id(str(s3["local"] / "b.mkv"))
    vid = [r[4] for r in first if r[0].endswith("/a.mp4")][0]
    assert vid == ids.video_id(str(s3["local"] / "a.mp4"))
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "0 ok, 0 error, 4 skipped (3 already in the store, 1 same content" in rerun.stdout, rerun.stdout       # (errors are retried by --retry-errors)
    assert "content ids: 0 files hashed, 3 unchanged files known" in rerun.stdout
    # a third URL with the content of a.mp4, new to the store: decoded once to learn its id, then not stored again
    third = subprocess.run([c if c != f"s3://{BUCKET}/videos/" else f"s3://{BUCKET}/copies/a-copy.mp4" for c in cmd
                            if c != str(tmp_path / "more.txt")], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "0 ok, 0 error, 1 skipped (already in the store) of 1 listed" in third.stdout, third.stdout
    assert "content ids: 1 files hashed, 0 unchanged" in third.stdout, third.stdout
    assert rows() == first


def test_https_sources_are_read_the_same_way(s3, tmp_path):
    data = (s3["local"] / "a.mp4").read_bytes()
    s3["client"].put_object(Bucket=BUCKET, Key="public/a.mp4", Body=data, ACL="public-read")
    url = f"{s3['endpoint']}/{BUCKET}/public/a.mp4"            # moto serves objects over plain HTTP too
    signed = s3["client"].generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "videos/a.mp4"})
    src = list_sources([url, signed])
    assert src.videos == [url, signed]
    r = RemoteIds(tmp_path, listed=src.objects, trust=False)
    assert r.identify(url) == r.identify(signed) == (ids.video_id(str(s3["local"] / "a.mp4")), None)
    assert r.save()
    assert RemoteIds(tmp_path).identify(url)[0] == ids.video_id(str(s3["local"] / "a.mp4"))
    with remote.spooled(signed) as path:
        assert open(path, "rb").read() == data
    from jobs.tag.decode import decode_video
    kw = dict(frames=8, window_s=10.0, size=32, resize=36)
    for u in (url, signed):                         # ranged reads over plain HTTP(S), decoded in process
        msgs = list(remote.decode_remote(u, decode_video, **kw))
        want = list(decode_video(str(s3["local"] / "a.mp4"), **kw))
        assert msgs[-1]["error"] is None and (msgs[2] == want[2]).all()
        assert msgs[-1]["streamed"]["content_id"] == ids.video_id(str(s3["local"] / "a.mp4"))
    vid, reason = RemoteIds(tmp_path).identify(f"{s3['endpoint']}/{BUCKET}/videos/missing.mp4")
    assert reason == "object not found"


MULTINODE = r"""
import json, os, sys
from ray.cluster_utils import Cluster
spool = sys.argv[1]
# the head has no CPU for tasks, and spools into a folder that does not exist: a decode placed there would fail
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                        "env_vars": {"BIKE_SPOOL_DIR": "/nonexistent/head-spool",
                                                                     "BIKE_REMOTE_READ": "spool"}})
worker = cluster.add_node(num_cpus=2, env_vars={"BIKE_SPOOL_DIR": spool})
cluster.wait_for_nodes()
import jobs.cli
try:
    rc = jobs.cli.main(sys.argv[2:] + ["--address", cluster.address])
finally:
    import ray
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()
sys.exit(rc)
"""


@pytest.mark.slow
def test_two_node_cluster_decodes_s3_videos_on_the_worker_node(s3, tmp_path):
    """A head (no task CPUs) and a worker node on this machine (ray.cluster_utils.Cluster); the videos exist only
    behind the S3 endpoint, and so does the store (docs/storage.md); every video is decoded on the worker node,
    from ranged reads (no spool file)."""
    spool = tmp_path / "worker-spool"
    spool.mkdir()
    store = f"s3://{BUCKET}/cluster-store/"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "BIKE_SPOOL_DIR", "BIKE_REMOTE_READ")}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=ROOT, **CREDS)
    cmd = [sys.executable, "-c", MULTINODE, str(spool), "tag", f"s3://{BUCKET}/videos/", "--store", str(store),
           "--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51", "--labels", "dog,cat,surfing",
           "--no-progress", "--decoders", "2"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    from index.store import Store
    rows = Store(store).connect().execute("SELECT path, status, error FROM videos ORDER BY path").fetchall()
    assert [r[1] for r in rows if "/videos/a.mp4" in r[0] or "/sub/b.mkv" in r[0]] == ["ok", "ok"], rows
    assert all(r[1] == "ok" for r in rows), rows      # none failed on the head's missing spool folder
    assert not list(spool.iterdir())                  # streamed: no spool file
    keys = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="cluster-store/")["Contents"]]
    assert any(k.startswith("cluster-store/_commits/") for k in keys) and not any(k.endswith("_lock.json") for k in keys)
    assert not list(tmp_path.glob("*/_commits"))      # nothing of the store on local disk


# ------------------------------------------------------------------------------ decoding from ranged reads
FORMATS = ("fast.mp4", "moov-at-end.mp4", "clip.mkv")
KW = dict(frames=8, window_s=2.0, size=32, resize=36, decoder="pyav")


@pytest.fixture(scope="module")
def formats(s3, tmp_path_factory):
    """One 6 s video as a faststart mp4, an mp4 with its moov box after the media data, and an mkv, uploaded
    under formats/ (a few hundred KB each: many 32 KiB blocks)."""
    local = tmp_path_factory.mktemp("formats")
    make_video(local / "moov-at-end.mp4", seconds=6, fps=25, size=(160, 120), pattern="testsrc")
    run_ffmpeg("-i", local / "moov-at-end.mp4", "-c", "copy", "-movflags", "+faststart", local / "fast.mp4")
    run_ffmpeg("-i", local / "moov-at-end.mp4", "-c", "copy", local / "clip.mkv")
    order = {name: [b[0] for b in mp4_boxes(local / name)] for name in FORMATS[:2]}
    assert order["fast.mp4"].index(b"moov") < order["fast.mp4"].index(b"mdat")
    assert order["moov-at-end.mp4"].index(b"moov") > order["moov-at-end.mp4"].index(b"mdat")
    for name in FORMATS:
        s3["client"].upload_file(str(local / name), BUCKET, f"formats/{name}")
    return local


@pytest.fixture
def proxy(s3, monkeypatch):
    """The S3 endpoint behind a counting TCP proxy; small blocks, fast backoff."""
    host, port = s3["endpoint"].rsplit("//", 1)[1].split(":")
    p = Proxy(host, int(port))
    monkeypatch.setenv("AWS_ENDPOINT_URL", p.endpoint)
    monkeypatch.setattr(ranged, "BLOCK_BYTES", 32 << 10)
    monkeypatch.setattr(remote, "BACKOFF_S", 0.001)
    yield p
    p.close()


def frames_of(msgs):
    return [m for m in msgs if not isinstance(m, dict)]


@pytest.mark.parametrize("name", FORMATS)
def test_ranged_decoding_gives_the_local_frames_and_reads_each_byte_once(formats, proxy, name):
    from jobs.tag.decode import decode_video
    local = formats / name
    size = local.stat().st_size
    got = list(remote.decode_remote(f"s3://{BUCKET}/formats/{name}", decode_video, **KW))
    want = list(decode_video(str(local), **KW))
    assert got[-1]["error"] is None and len(frames_of(got)) == len(frames_of(want)) >= 1
    assert all((a == b).all() for a, b in zip(frames_of(got), frames_of(want)))
    assert [m["spans"] for m in got if isinstance(m, dict) and m["kind"] == "chunk"] == \
        [m["spans"] for m in want if isinstance(m, dict) and m["kind"] == "chunk"]
    streamed = got[-1]["streamed"]
    assert streamed["content_id"] == ids.video_id(str(local))         # the id of the same file on disk
    blocks = -(-size // (32 << 10))
    assert blocks >= 8 and (streamed["bytes"], streamed["gets"]) == (size, blocks)     # each byte once
    assert size <= proxy.answer_bytes < size + 2000 * (blocks + 1)     # what crossed the wire: bytes + headers


def test_an_object_larger_than_the_block_cache_decodes_the_same_in_bounded_memory(formats, proxy):
    from jobs.tag.decode import decode_video
    local = formats / "clip.mkv"
    src = ranged.RemoteSource(f"s3://{BUCKET}/formats/clip.mkv", cache_bytes=128 << 10)   # 4 blocks of 32 KiB
    got = list(decode_video(src, **KW))
    assert got[-1]["error"] is None
    assert all((a == b).all() for a, b in zip(frames_of(got), frames_of(list(decode_video(str(local), **KW)))))
    assert src.finish() == ids.video_id(str(local))
    assert src.peak_cached <= 128 << 10                               # the bound held ...
    assert local.stat().st_size < src.fetched < 3 * local.stat().st_size   # ... at the price of fetching again


def test_a_connection_cut_mid_object_resumes_at_the_byte_it_reached(formats, proxy):
    from jobs.tag.decode import decode_video
    local = formats / "fast.mp4"
    proxy.cut_after, proxy.cuts = 20_000, 3                             # three connections cut mid-answer
    got = list(remote.decode_remote(f"s3://{BUCKET}/formats/fast.mp4", decode_video, **KW))
    assert proxy.cuts == 0 and got[-1]["error"] is None
    assert all((a == b).all() for a, b in zip(frames_of(got), frames_of(list(decode_video(str(local), **KW)))))
    streamed = got[-1]["streamed"]
    assert streamed["content_id"] == ids.video_id(str(local))
    assert streamed["bytes"] == local.stat().st_size                   # resumed, nothing fetched twice
    assert streamed["gets"] > -(-local.stat().st_size // (32 << 10))   # the resumed requests


def test_a_connection_that_keeps_dropping_is_an_error_never_half_a_video(formats, proxy):
    from jobs.tag.decode import decode_video
    proxy.cut_after, proxy.cuts = 1_000, -1                            # every connection dies after 1 KB
    got = list(remote.decode_remote(f"s3://{BUCKET}/formats/clip.mkv", decode_video, **KW))
    end = got[-1]
    assert end["kind"] == "end" and end["error"].startswith("connection lost"), end["error"]
    assert end["streamed"]["content_id"] is None                      # no id: the driver keys it by URL


def test_a_stalled_read_ends_in_an_error_naming_the_object(formats, proxy):
    from engine import video as ev
    from jobs.tag.decode import decode_video
    url = f"s3://{BUCKET}/formats/moov-at-end.mp4"
    src = ranged.RemoteSource(url, stall_s=1.0)
    proxy.stall = True                                                  # the server answers nothing more
    import time
    t = time.monotonic()
    msgs = list(decode_video(src, **KW))
    assert time.monotonic() - t < 20
    assert msgs[-1]["error"].startswith("read stalled") and src.failure
    with pytest.raises(ev.VideoError, match=f"^{url}: read stalled"):
        ev.probe(src)


def test_an_object_replaced_while_it_is_read_is_an_error(s3, formats, proxy):
    from jobs.tag.decode import decode_video
    key = "formats/replaced.mkv"
    s3["client"].upload_file(str(formats / "clip.mkv"), BUCKET, key)
    src = ranged.RemoteSource(f"s3://{BUCKET}/{key}", cache_bytes=64 << 10)
    assert src.open().read(100)                                         # the first block, pinned to its ETag
    data = (formats / "clip.mkv").read_bytes()
    s3["client"].put_object(Bucket=BUCKET, Key=key, Body=data[:1000] + data[1000:][::-1])   # same size, new bytes
    msgs = list(decode_video(src, **KW))
    assert msgs[-1]["error"] == "object changed while it was read (its ETag changed)", msgs[-1]["error"]
    with pytest.raises(remote.RemoteError, match="object changed"):
        src.finish()


def test_the_spool_path_decodes_the_same_and_hashes_on_the_way(formats, proxy, monkeypatch):
    from jobs.tag.decode import decode_video
    monkeypatch.setenv("BIKE_REMOTE_READ", "spool")
    local = formats / "moov-at-end.mp4"
    got = list(remote.decode_remote(f"s3://{BUCKET}/formats/moov-at-end.mp4", decode_video, **KW))
    assert all((a == b).all() for a, b in zip(frames_of(got), frames_of(list(decode_video(str(local), **KW)))))
    assert got[-1]["streamed"]["content_id"] == ids.video_id(str(local))
    assert got[-1]["streamed"]["bytes"] == local.stat().st_size


@pytest.mark.slow
def test_bike_tag_stores_a_lost_connection_as_an_error_row_and_a_rerun_tags_the_video(s3, formats, tmp_path):
    """`bike tag` through a proxy that cuts every connection after 1 KB: the object's row is an error with the
    reason, keyed by its URL (no clip of it stored); the rerun without the proxy tags it under its content id
    and drops the error row."""
    host, port = s3["endpoint"].rsplit("//", 1)[1].split(":")
    proxy = Proxy(host, int(port))
    proxy.cut_after, proxy.cuts = 1_000, -1
    url = f"s3://{BUCKET}/formats/clip.mkv"
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_ENDPOINT_URL")}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=ROOT, **CREDS)
    cmd = [sys.executable, "-m", "jobs.cli", "tag", url, "--store", str(store), "--model", "bike-tiny",
           "--random-init", "--lexicon", "hmdb51", "--labels", "dog,cat,surfing", "--no-progress", "--window", "2"]
    try:
        run = subprocess.run([*cmd, "--endpoint", proxy.endpoint], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    finally:
        proxy.close()
    assert run.returncode == 0, run.stderr[-2000:]
    assert "0 ok, 1 error" in run.stdout and f"error: {url}: connection lost" in run.stdout, run.stdout
    from index.store import Store
    con = Store(store).connect()
    assert con.execute("SELECT video_id, status, num_clips FROM videos").fetchall() == [(ids.path_id(url), "error", 0)]
    assert con.execute("SELECT count(*) FROM clips").fetchone()[0] == 0
    rerun = subprocess.run([*cmd, "--endpoint", s3["endpoint"]], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0 and "1 ok, 0 error" in rerun.stdout, rerun.stdout + rerun.stderr[-2000:]
    con = Store(store).connect()
    assert con.execute("SELECT video_id, status, num_clips FROM videos").fetchall() == [
        (ids.video_id(str(formats / "clip.mkv")), "ok", 3)]
