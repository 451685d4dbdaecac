"""Object-storage sources (jobs/remote.py) against a real S3-compatible server: moto's server mode, started by a
fixture on a free loopback port. Listing, content ids equal to local ones and remembered by ETag, the bounded
spool, retries with backoff, vanished / missing objects as error rows, and `bike tag s3://…` end to end."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from index import ids
from jobs import remote
from jobs.errors import UsageError
from jobs.sources import list_sources
from media import make_video
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
    r = remote.RemoteIds(tmp_path, listed=listed)
    vid, err = r.identify(url)
    assert err is None and vid == ids.video_id(str(s3["local"] / "a.mp4")) and r.hashed == 1
    assert r.save()
    again = remote.RemoteIds(tmp_path, listed=listed)
    assert again.identify(url) == (vid, None) and (again.hits, again.hashed) == (1, 0)    # no byte read
    # a new upload under the same name has a new ETag: hashed again
    s3["client"].put_object(Bucket=BUCKET, Key="misc/changed.mp4", Body=b"one")
    r2 = remote.RemoteIds(tmp_path)
    first = r2.identify(f"s3://{BUCKET}/misc/changed.mp4")
    r2.save()
    s3["client"].put_object(Bucket=BUCKET, Key="misc/changed.mp4", Body=b"two!")
    r3 = remote.RemoteIds(tmp_path)
    second = r3.identify(f"s3://{BUCKET}/misc/changed.mp4")
    assert first != second and r3.hashed == 1
    assert remote.RemoteIds(tmp_path, trust=False).identify(url) == (vid, None)
    missing = remote.RemoteIds(tmp_path).identify(f"s3://{BUCKET}/videos/missing.mp4")
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
    from jobs.decode import decode_video
    msgs = list(remote.decode_remote(url, decode_video, frames=8, window_s=10.0, size=32, resize=36))
    assert [m["kind"] for m in msgs] == ["head", "end"] and msgs[-1]["error"] == "object not found"


def test_decoding_a_remote_object_matches_decoding_the_file(s3):
    from jobs.decode import decode_video
    kw = dict(frames=8, window_s=10.0, size=32, resize=36)
    got = [m for m in remote.decode_remote(f"s3://{BUCKET}/videos/a.mp4", decode_video, **kw)]
    want = list(decode_video(str(s3["local"] / "a.mp4"), **kw))
    assert len(got) == len(want) == 4                              # head, chunk, frames, end
    assert (got[2] == want[2]).all()


def test_a_dropped_transfer_resumes_at_the_byte_it_reached(s3, monkeypatch):
    monkeypatch.setattr(remote, "READ_BYTES", 1000)
    monkeypatch.setattr(remote, "BACKOFF_S", 0.001)
    url = f"s3://{BUCKET}/videos/sub/b.mkv"
    parts, calls = [], {"n": 0}

    def sink(block):
        calls["n"] += 1
        if calls["n"] in (3, 4):                 # the connection drops twice, mid-object
            raise ConnectionResetError("connection reset by peer")
        parts.append(block)

    n = remote.stream(url, sink)
    assert b"".join(parts) == (s3["local"] / "b.mkv").read_bytes() and n == len(b"".join(parts))


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
    """End to end in a subprocess (its own Ray, with the endpoint and credentials in its environment)."""
    (tmp_path / "more.txt").write_text(f"s3://{BUCKET}/videos/missing.mp4\n")
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_ENDPOINT_URL")}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=ROOT, **CREDS)
    cmd = [sys.executable, "-m", "jobs.cli", "tag", f"s3://{BUCKET}/videos/", str(tmp_path / "more.txt"),
           "--store", str(store), "--endpoint", s3["endpoint"], "--model", "bike-tiny", "--random-init",
           "--lexicon", "hmdb51", "--labels", "dog,cat,surfing", "--no-progress"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 ok, 1 error" in run.stdout and "object not found" in run.stdout
    from index.store import Store
    con = Store(store).connect()
    rows = con.execute("SELECT path, status, error, num_clips FROM videos ORDER BY path").fetchall()
    assert rows == [(f"s3://{BUCKET}/videos/a.mp4", "ok", None, 1),
                    (f"s3://{BUCKET}/videos/missing.mp4", "error", "object not found", 0),
                    (f"s3://{BUCKET}/videos/sub/b.mkv", "ok", None, 1)]
    vid = con.execute("SELECT video_id FROM videos WHERE path LIKE '%a.mp4'").fetchone()[0]
    assert vid == ids.video_id(str(s3["local"] / "a.mp4"))
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "0 ok, 0 error, 3 skipped" in rerun.stdout                  # (errors are retried by --retry-errors)
    assert "content ids: 0 files hashed, 2 unchanged files known" in rerun.stdout


def test_https_sources_are_read_the_same_way(s3, tmp_path):
    data = (s3["local"] / "a.mp4").read_bytes()
    s3["client"].put_object(Bucket=BUCKET, Key="public/a.mp4", Body=data, ACL="public-read")
    url = f"{s3['endpoint']}/{BUCKET}/public/a.mp4"            # moto serves objects over plain HTTP too
    signed = s3["client"].generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "videos/a.mp4"})
    src = list_sources([url, signed])
    assert src.videos == [url, signed]
    r = remote.RemoteIds(tmp_path, listed=src.objects)
    assert r.identify(url) == r.identify(signed) == (ids.video_id(str(s3["local"] / "a.mp4")), None)
    assert r.save()
    assert remote.RemoteIds(tmp_path).identify(url)[0] == ids.video_id(str(s3["local"] / "a.mp4"))
    with remote.spooled(signed) as path:
        assert open(path, "rb").read() == data
    vid, reason = remote.RemoteIds(tmp_path).identify(f"{s3['endpoint']}/{BUCKET}/videos/missing.mp4")
    assert reason == "object not found"


MULTINODE = r"""
import json, os, sys
from ray.cluster_utils import Cluster
spool = sys.argv[1]
# the head has no CPU for tasks, and a spool folder that does not exist: a decode placed there would fail
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                        "env_vars": {"BIKE_SPOOL_DIR": "/nonexistent/head-spool"}})
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
    behind the S3 endpoint, and so does the store (docs/storage.md); every video is decoded from the worker
    node's spool folder."""
    spool = tmp_path / "worker-spool"
    spool.mkdir()
    store = f"s3://{BUCKET}/cluster-store/"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "BIKE_SPOOL_DIR")}
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
    assert not list(spool.iterdir())                  # spool files are removed after decoding
    keys = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="cluster-store/")["Contents"]]
    assert any(k.startswith("cluster-store/_commits/") for k in keys) and not any(k.endswith("_lock.json") for k in keys)
    assert not list(tmp_path.glob("*/_commits"))      # nothing of the store on local disk
