"""The store itself on object storage (``--store s3://bucket/prefix/``) against moto's S3 server
(tests/s3server.py): immutable shard names, commit records by conditional create, the lease object as writer
lock (a second writer fails at once with the holder; a dead pid's or an expired lease is taken over), readers
that trust only commit records, the sandboxed DuckDB views, and ``bike tag`` → ``bike sql`` → ``bike search``
end to end with s3:// sources and an s3:// store, including a SIGKILL in the middle of a run and the rerun."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from index.store import lease as leasemod
from index.store import Store, StoreError
from media import make_video
from s3server import CREDS, moto_s3
from test_store import _rows
from killjob import sigkill_when

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "bike-store"
TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51"]
LABELS = "dog,cat,surfing,cooking,playing guitar"


@pytest.fixture(scope="module")
def s3():
    with moto_s3(BUCKET) as srv:
        yield srv


@pytest.fixture
def url(request, s3):
    """A fresh store prefix per test."""
    return f"s3://{BUCKET}/{request.node.name[:40]}-{time.time_ns() % 10**9}/"


def _keys(s3, url, folder=""):
    prefix = url.split(f"{BUCKET}/", 1)[1] + folder
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for p in pages for o in p.get("Contents", []))


def _etag(s3, url, key):
    return s3["client"].head_object(Bucket=BUCKET, Key=url.split(f"{BUCKET}/", 1)[1] + key)["ETag"]


def _count(store, table, where="true"):
    return store.connect().execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]


def test_batches_are_visible_once_committed_and_readers_ignore_uncommitted_shards(s3, url):
    s = Store(url, create=True)
    with s.lock():
        a = s.write_batch(_rows("a"), "m1", {"a": "ok"})
        s.write_batch(_rows("b"), "m1", {"b": "ok"})
    # a writer killed after uploading a shard, before its commit record: an object no record names
    orphan = "labels/99999999999999999999-deadbeef.parquet"
    buf = pa.BufferOutputStream()
    pq.write_table(_rows("z")["labels"], buf)
    s3["client"].put_object(Bucket=BUCKET, Key=url.split(f"{BUCKET}/", 1)[1] + orphan, Body=buf.getvalue().to_pybytes())
    reader = Store(url)
    assert _count(reader, "labels") == 4 and _count(reader, "attributes") == 2 and _count(reader, "clips") == 0
    assert reader.read("labels", ["video_id"]).num_rows == 4 and "z" not in reader.done_videos("m1")
    assert [str(p) for p in reader.files("labels")][0] == f"{url}labels/{a}.parquet"
    with pytest.raises(StoreError, match="needs its writer lease"):
        reader.recover()                                      # deleting shards is the lease holder's job
    with reader.lock():
        assert reader.recover() == {"tmp": 0, "uncommitted": 1, "replacements": 0}
    assert orphan.split("/")[1] not in _keys(s3, url, "labels/")
    assert "_lock.json" not in _keys(s3, url)                # released
    with pytest.raises(StoreError, match="no such store"):
        Store(f"s3://{BUCKET}/nothing-here/")
    with pytest.raises(StoreError, match="bucket no-such-bucket"):
        Store("s3://no-such-bucket/st/", create=True)
    with pytest.raises(StoreError, match="not gs://"):
        Store("gs://bucket/st/", create=True)


def test_replacement_writes_new_names_and_never_overwrites_a_shard(s3, url):
    s = Store(url, create=True)
    with s.lock():
        a = s.write_batch(_rows("a"), "m1", {"a": "ok"})
        s.write_batch(_rows("b"), "m1", {"b": "ok"})
        before = _etag(s3, url, f"labels/{a}.parquet")
        s.write_batch(_rows("a", label="cat"), "m1", {"a": "ok"}, replace=True)
    assert _etag(s3, url, f"labels/{a}.parquet") == before   # the old shard is untouched ...
    r = Store(url)
    rec = next(c for c in r.commits() if c["batch"] == a)
    assert rec["shards"]["labels"] != f"{a}.parquet" and rec["tables"]["labels"] == 0   # ... the record points anew
    assert _count(r, "labels", "video_id = 'a'") == 2 and _count(r, "labels", "label = 'cat'") == 2
    assert _count(r, "labels", "video_id = 'b'") == 2 and not r.damaged
    with r.lock():
        assert r.recover()["uncommitted"] == 2              # ... and goes with the next recovery (labels, attributes)
    assert f"{a}.parquet" not in _keys(s3, url, "labels/") and _count(Store(url), "labels") == 4


def test_a_shard_of_the_wrong_size_makes_its_batch_damaged_not_every_query_fail(s3, url):
    s = Store(url, create=True)
    with s.lock():
        a = s.write_batch(_rows("a"), "m1", {"a": "ok"})
        s.write_batch(_rows("b"), "m1", {"b": "ok"})
    key = url.split(f"{BUCKET}/", 1)[1] + f"labels/{a}.parquet"
    s3["client"].put_object(Bucket=BUCKET, Key=key, Body=b"PAR1 truncated")
    warnings = []
    r = Store(url, warn=warnings.append)
    assert _count(r, "labels") == 2 and list(r.damaged) == [a]
    assert len(warnings) == 1 and "is damaged and left out" in warnings[0] and "14 bytes" in warnings[0]


def test_a_second_writer_fails_at_once_naming_the_holder(s3, videos, url, capsys):
    """Two processes: a writer committing batches in a loop under its lease, and this one trying to write (through
    the Store API, and as `bike tag`)."""
    import jobs.cli
    Store(url, create=True)
    script = (
        "import sys, time; sys.path.insert(0, 'tests')\n"
        "from index.store import Store\nfrom test_store import _rows\n"
        f"s = Store({url!r})\n"
        "with s.lock():\n"
        "    print('locked', flush=True)\n"
        "    for i in range(6):\n"
        "        s.write_batch(_rows(f'v{i}'), 'm1', {f'v{i}': 'ok'}); time.sleep(1.5)\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(StoreError) as e:
            with Store(url).lock():
                pass
        assert time.monotonic() - t0 < 10                    # at once, not after a wait
        msg = str(e.value)
        assert f"another job (pid {proc.pid} on host {socket.gethostname()}" in msg
        assert "its lease expires at" in msg and "wait for it to finish, or use another --store" in msg
        assert "\n" not in msg
        # a video to list (`bike tag` refuses an empty source before it opens the store)
        s3["client"].put_object(Bucket=BUCKET, Key="queued/a.mp4", Body=b"not read: the lock comes first")
        assert jobs.cli.main(["tag", f"s3://{BUCKET}/queued/", "--store", url, *TINY, "--labels", LABELS,
                              "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"another job (pid {proc.pid} on host" in err[0], err
        assert proc.poll() is None                           # it was still writing all along
    finally:
        assert proc.wait(timeout=120) == 0
    r = Store(url)                                           # the store is intact: six whole batches
    assert sorted(r.done_videos("m1")) == [f"v{i}" for i in range(6)] and not r.damaged
    assert _count(r, "labels") == 12


def _put_lease(s3, url, **holder):
    body = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "expires": time.time() + 3600, "token": "x", **holder}
    s3["client"].put_object(Bucket=BUCKET, Key=url.split(f"{BUCKET}/", 1)[1] + "_lock.json",
                            Body=json.dumps(body).encode())


def test_a_stale_lease_is_taken_over_a_live_one_is_not(s3, url):
    s = Store(url, create=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _put_lease(s3, url, pid=int(dead.stdout))                # this host, a process that has exited
    with s.lock() as held:
        assert "no longer running on this host" in held.took_over["why"]
        s.write_batch(_rows("a"), "m1", {"a": "ok"})
    _put_lease(s3, url, host="elsewhere", pid=1, expires=time.time() - 5)     # another host, expired
    with s.lock() as held:
        assert held.took_over["why"] == "expired"
    _put_lease(s3, url, host="elsewhere", pid=1)             # another host, live: refused
    with pytest.raises(StoreError, match=r"another job \(pid 1 on host elsewhere"):
        with s.lock():
            pass
    assert Store(url).done_videos("m1") == {"a": "ok"}


def test_the_lease_is_renewed_and_a_lost_lease_stops_commits(s3, url, monkeypatch):
    monkeypatch.setenv("BIKE_LEASE_S", "3")
    s = Store(url, create=True)
    with s.lock() as held:
        first = held.expires
        time.sleep(2.2)                                      # renewed every ttl/3 = 1 s
        assert held.expires > first + 0.5 and not held.lost
        assert json.loads(s3["client"].get_object(Bucket=BUCKET, Key=url.split(f"{BUCKET}/", 1)[1] + "_lock.json")
                          ["Body"].read())["token"] == held.token
        _put_lease(s3, url, host="elsewhere", pid=1)         # another job took it over (as if it had expired)
        held.renew()
        with pytest.raises(StoreError, match="lost the writer lease"):
            s.write_batch(_rows("a"), "m1", {"a": "ok"})
    assert _keys(s3, url, "_commits/") == []                 # nothing committed after the loss
    assert json.loads(s3["client"].get_object(Bucket=BUCKET, Key=url.split(f"{BUCKET}/", 1)[1] + "_lock.json")
                      ["Body"].read())["host"] == "elsewhere"    # release never deletes another job's lease


def test_a_commit_record_is_never_overwritten(s3, url):
    s = Store(url, create=True)
    with s.lock():
        b = s.write_batch(_rows("a"), "m1", {"a": "ok"})
        with pytest.raises(StoreError, match="written by another job first"):
            s._write_record({"batch": b, "model_id": "m1", "videos": {}, "tables": {}}, new=True)
    assert Store(url).done_videos("m1") == {"a": "ok"}


def test_sql_over_an_s3_store_stays_sandboxed(s3, url, tmp_path):
    from index.store.sql import SQLError, query
    s = Store(url, create=True)
    with s.lock():
        s.write_batch(_rows("a"), "m1", {"a": "ok"})
    secret = tmp_path / "secret.parquet"
    pq.write_table(pa.table({"x": [1]}), secret)
    assert query(Store(url), "SELECT label, count(*) FROM labels GROUP BY 1") == (["label", "count_star()"], [("dog", 2)])
    for q in (f"SELECT * FROM read_parquet('{secret}')", "SELECT * FROM read_text('/etc/passwd')",
              f"SELECT * FROM read_parquet('{url}labels/*.parquet')"):
        with pytest.raises(SQLError, match="Permission Error|disabled|not allowed"):
            query(Store(url), q)
    with pytest.raises(SQLError, match="refused"):
        query(Store(url), "CREATE TABLE t AS SELECT 1")


def test_compaction_on_s3_merges_new_names_and_deletes_old_files_after_the_grace(s3, url):
    from index.store.compact import collect_garbage, compact
    s = Store(url, create=True)
    with s.lock():
        for v in "abcdef":
            s.write_batch(_rows(v), "m1", {v: "ok"})
        s.write_batch(_rows("b", label="cat"), "m1", {"b": "ok"}, replace=True)    # b's old shard: a new name
    before = sorted(Store(url).read("labels", ["video_id", "label"]).to_pylist(), key=str)
    report = compact(Store(url), grace_s=600)
    assert report.groups == 1 and report.merged == 7 and report.batches_after == 1
    r = Store(url)
    assert sorted(r.read("labels", ["video_id", "label"]).to_pylist(), key=str) == before
    assert _count(r, "labels", "label = 'cat'") == 2 and len(r.superseded) == 7 and not r.damaged
    (merged,) = r.commits()
    assert merged["batch"].endswith(tuple("0123456789abcdef")) and "-c" in merged["batch"]
    assert len(_keys(s3, url, "_commits/")) == 8                 # the merged batches wait out the grace period
    assert collect_garbage(Store(url), grace_s=600) == 0
    assert collect_garbage(Store(url), grace_s=0) == 7
    assert _keys(s3, url, "_commits/") == [f"{merged['batch']}.json"]
    assert _keys(s3, url, "labels/") == [f"{merged['batch']}.parquet"]
    assert sorted(Store(url).read("labels", ["video_id", "label"]).to_pylist(), key=str) == before


def test_bike_check_verifies_an_s3_store_in_full(s3, url, capsys):
    import jobs.cli
    s = Store(url, create=True)
    with s.lock():
        a = s.write_batch(_rows("a"), "m1", {"a": "ok"})
        s.write_batch(_rows("b"), "m1", {"b": "ok"})
    assert jobs.cli.main(["check", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "2 batches, 4 shards, 6 rows checked" in out and "bike check: OK" in out
    key = url.split(f"{BUCKET}/", 1)[1] + f"labels/{a}.parquet"
    data = bytearray(s3["client"].get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF                                  # a flipped bit: same size, readers cannot tell
    s3["client"].put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    s3["client"].put_object(Bucket=BUCKET, Key=url.split(f"{BUCKET}/", 1)[1] + "clips/99999999999999999999-deadbeef.parquet",
                            Body=b"PAR1")
    assert jobs.cli.main(["check", "--store", url]) == 1
    out = capsys.readouterr().out
    assert f"batch {a}: labels shard: SHA-256 differs from the commit record" in out
    assert "1 files of no committed batch" in out and f"Fix: bike repair --store {url.rstrip('/')}" in out
    # bike repair: the batch's objects are copied into _quarantine/, its record deleted; its video is not done
    assert jobs.cli.main(["repair", "--store", url]) == 0
    out = capsys.readouterr().out
    assert f"batch {a} set aside in {url}_quarantine/{a}" in out and "1 videos to tag again" in out
    assert sorted(_keys(s3, url, f"_quarantine/{a}/")) == ["attributes.parquet", "commit.json", "labels.parquet",
                                                          "why.json"]
    assert f"{a}.json" not in _keys(s3, url, "_commits/") and not any(a in k for k in _keys(s3, url, "labels/"))
    assert Store(url).done_videos("m1") == {"b": "ok"}
    assert jobs.cli.main(["check", "--store", url]) == 0 and "bike check: OK" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def videos(s3, tmp_path_factory):
    """Eight distinct real videos, only in the bucket (trailing bytes make their content ids differ)."""
    local = tmp_path_factory.mktemp("s3videos")
    make_video(local / "base.mp4", seconds=2, fps=10, size=(64, 48), pattern="testsrc")
    base = (local / "base.mp4").read_bytes()
    for i in range(8):
        s3["client"].put_object(Bucket=BUCKET, Key=f"videos/v{i}.mp4", Body=base + b"\0" * (i + 1))
    return f"s3://{BUCKET}/videos/"


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "BIKE_LEASE_S")}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=ROOT, **CREDS)
    return env


def _bike(*args, timeout=400):
    return subprocess.run([sys.executable, "-m", "jobs.cli", *map(str, args)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_tag_sql_search_with_s3_sources_and_an_s3_store(s3, videos, url, tmp_path):
    run = _bike("tag", videos, "--store", url, "--labels", LABELS, *TINY, "--batch", "3", "--no-progress")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "8 ok, 0 error" in run.stdout and "index flat" in run.stdout, run.stdout
    assert any(k.startswith("_index/") and k.endswith("/manifest.json") for k in _keys(s3, url))
    assert "_ids/remote.parquet" in _keys(s3, url)           # remembered content ids live in the store too
    sql = _bike("sql", "--store", url, "--format", "json",
                "SELECT count(*) AS n, count(DISTINCT video_id) AS d FROM videos WHERE status = 'ok'")
    assert sql.returncode == 0, sql.stderr[-2000:]
    assert json.loads(sql.stdout) == [{"n": 8, "d": 8}]
    search = _bike("search", "--store", url, "a dog", "-k", "3", "--format", "json")
    assert search.returncode == 0, search.stderr[-2000:]
    found = json.loads(search.stdout)
    hits = found["results"] if isinstance(found, dict) else found
    assert len(hits) == 3 and all(h["path"].startswith(videos) for h in hits), found
    rerun = _bike("tag", videos, "--store", url, "--labels", LABELS, *TINY, "--no-progress")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "0 ok, 0 error, 8 skipped" in rerun.stdout and "0 files hashed, 8 unchanged" in rerun.stdout
    # bike serve's service over the same store: answers, and sees a batch another job commits meanwhile
    from jobs.serve.service import Service
    svc = Service(url, refresh_s=0)
    assert [r["clip_id"] for r in svc.search("a dog", k=3)["results"]] == [h["clip_id"] for h in hits]
    assert svc.searcher.index is not None and not svc.searcher.index_status()    # the index, downloaded once
    assert not svc.maybe_refresh()
    writer = Store(url)
    with writer.lock():
        writer.write_batch(_rows("extra", model_id="other"), "other", {"extra": "ok"})
    assert svc.maybe_refresh()
    assert svc.sql("SELECT count(*) AS n FROM labels WHERE model_id = 'other'")["rows"] == [[2]]
    rebuilt = _bike("index", "--store", url, "--kind", "hnsw", "--format", "json")    # bike index on its own
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert json.loads(rebuilt.stdout)["kind"] == "hnsw" and "_lock.json" not in _keys(s3, url)
    assert len([k for k in _keys(s3, url) if k.endswith(".faiss")]) == 2     # this generation and the previous
    assert svc.maybe_refresh() and svc.searcher.index.kind == "hnsw"          # the new manifest: downloaded anew
    assert len(svc.search("a dog", k=3)["results"]) == 3
    relabel = _bike("relabel", "--store", url, "--labels", "juggling,yoga,painting", "--no-progress")
    assert relabel.returncode == 0, relabel.stderr[-2000:]
    con = Store(url).connect()
    assert con.execute("SELECT count(DISTINCT model_id) FROM clips").fetchall() == [(2,)]
    assert con.execute("SELECT count(DISTINCT video_id) FROM labels WHERE label = 'yoga' OR label = 'juggling'"
                       ).fetchall() == [(8,)]
    batches = len(Store(url).commits())
    r = _bike("compact", "--store", url, "--grace", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(Store(url).commits()) < batches
    con = Store(url).connect()
    assert con.execute("SELECT count(*), count(DISTINCT video_id) FROM videos").fetchall() == [(16, 8)]
    assert con.execute("SELECT count(*) FROM labels WHERE model_id = 'other'").fetchall() == [(2,)]


@pytest.mark.slow
def test_sigkill_of_tag_then_rerun_is_exactly_once_on_s3(s3, videos, url):
    cmd = [sys.executable, "-m", "jobs.cli", "tag", videos, "--store", url, "--labels", LABELS, *TINY,
           "--batch", "1", "--model-batch", "1", "--no-index", "--no-progress"]
    sigkill_when(cmd, lambda: len([k for k in _keys(s3, url, "_commits/") if k.endswith(".json")]) >= 2,
                 cwd=ROOT, env=_env())
    assert "_lock.json" in _keys(s3, url)                    # the dead writer's lease is still there
    partial = Store(url)
    assert 2 <= len(partial.done_videos(partial.model_ids().pop())) < 8
    rerun = _bike("tag", videos, "--store", url, "--labels", LABELS, *TINY, "--batch", "4", "--no-index",
                  "--no-progress", "--compact-at", "2")          # and compact: the merged store is checked below
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    r = Store(url)
    bike_batches = [c for c in r.commits() if not c["model_id"].startswith("text:")]
    assert len(bike_batches) == 1 and r.superseded            # --compact-at 2 merged every BIKE batch into one
    assert {c["model_id"] for c in r.commits()} - {bike_batches[0]["model_id"]} == {"text:subtitle"}  # + subtitles
    con = r.connect()
    assert con.execute("SELECT count(*), count(DISTINCT video_id), count(*) FILTER (status = 'ok') "
                       "FROM videos").fetchall() == [(8, 8, 8)]
    assert con.execute("SELECT count(*), count(DISTINCT clip_id) FROM clips").fetchall() == [(8, 8)]
    assert con.execute("SELECT count(*) FROM embeddings").fetchall() == [(8,)]
    named = {Store.shard_key(t, c).split("/", 1)[1] for c in r.records() for t in c["tables"]}
    for table in ("clips", "labels", "videos"):
        assert set(_keys(s3, url, f"{table}/")) <= named      # the killed batch's shards were cleaned up
    assert "_lock.json" not in _keys(s3, url)


def test_lease_messages_name_the_time_left():
    now = 1_000_000.0
    text = leasemod.describe({"pid": 7, "host": "h", "started": now - 10, "expires": now + 42}, now)
    assert text.startswith("pid 7 on host h, since ") and text.endswith("(in 42 s)")


def test_a_conditional_put_retried_after_a_dropped_connection_knows_its_own_write(s3, url, monkeypatch):
    """The first PUT lands, then its connection drops; the retry meets its own object (412) and reads it back."""
    s = Store(url, create=True)
    real = s.fs.client.put_object
    drop = {"key": "probe.json", "n": 0}

    def dropped_once(**kw):
        out = real(**kw)
        if kw["Key"].endswith(drop["key"]) and drop["n"] == 0:
            drop["n"] += 1
            raise ConnectionResetError("connection reset by peer")
        return out
    monkeypatch.setattr(s.fs.client, "put_object", dropped_once)
    assert s.fs.create("probe.json", b"mine") is not None and drop["n"] == 1
    assert s.fs.create("probe.json", b"someone else's") is None          # a real conflict stays a conflict
    drop.update(key=".parquet", n=0)                                      # a shard upload (a file body)
    with s.lock():
        s.write_batch(_rows("a"), "m1", {"a": "ok"})
    assert drop["n"] == 1 and Store(url).done_videos("m1") == {"a": "ok"} and not Store(url).damaged


def test_a_record_cannot_point_a_reader_outside_its_shards(s3, url):
    s = Store(url, create=True)
    with s.lock():
        a = s.write_batch(_rows("a"), "m1", {"a": "ok"})
    prefix = url.split(f"{BUCKET}/", 1)[1]
    rec = json.loads(s3["client"].get_object(Bucket=BUCKET, Key=f"{prefix}_commits/{a}.json")["Body"].read())
    forged = {"99999999999999999998-00000001": {**rec, "batch": a},                     # another batch's name
              "99999999999999999999-00000002": {**rec, "batch": "99999999999999999999-00000002",
                                                "shards": {"labels": "../../elsewhere.parquet"}}}
    for name, body in forged.items():
        s3["client"].put_object(Bucket=BUCKET, Key=f"{prefix}_commits/{name}.json", Body=json.dumps(body).encode())
    warnings = []
    r = Store(url, warn=warnings.append)
    assert [c["batch"] for c in r.commits()] == [a] and sorted(r.damaged) == sorted(forged)
    assert "not its own file name" in r.damaged["99999999999999999998-00000001"]
    assert "'shards.labels' is \"../../elsewhere.parquet\", not a shard file of this batch" in \
        r.damaged["99999999999999999999-00000002"]
    assert _count(r, "labels") == 2 and len(warnings) == 2


def test_a_forged_compaction_record_hides_nothing_and_compaction_deletes_nothing_on_s3(s3, url, capsys):
    """A well-formed record with ``"tables": {}`` naming the real batches under ``compacted`` (or pointing its
    ``shards`` at another batch's files): readers ignore it, `bike check` reports it, and the clean-up of
    `bike compact` never deletes behind it."""
    import jobs.cli
    from index.store.compact import collect_garbage
    s = Store(url, create=True)
    with s.lock():
        a = s.write_batch(_rows("a"), "m1", {"a": "ok"})
        b = s.write_batch(_rows("b"), "m1", {"b": "ok"})
    prefix = url.split(f"{BUCKET}/", 1)[1]
    real = json.loads(s3["client"].get_object(Bucket=BUCKET, Key=f"{prefix}_commits/{a}.json")["Body"].read())
    forged = {f"{b}-cbad": {"batch": f"{b}-cbad", "model_id": "m1", "videos": {}, "tables": {}, "files": {},
                            "replace": False, "cleaned": True, "created": 0.0, "compacted": [a, b], "covers": []},
              f"{b}-cbad2": {**real, "batch": f"{b}-cbad2", "compacted": [a], "shards": {"labels": f"{a}.parquet"},
                             "created": 0.0}}
    for name, body in forged.items():
        s3["client"].put_object(Bucket=BUCKET, Key=f"{prefix}_commits/{name}.json", Body=json.dumps(body).encode())
    warnings = []
    r = Store(url, warn=warnings.append)
    assert [c["batch"] for c in r.commits()] == [a, b] and not r.superseded and sorted(r.damaged) == sorted(forged)
    assert "forged or damaged compaction record" in r.damaged[f"{b}-cbad"]
    assert "not a shard file of this batch" in r.damaged[f"{b}-cbad2"]
    assert _count(r, "labels") == 4 and len(warnings) == 2
    w = Store(url, warn=lambda m: None)
    with w.lock():
        assert collect_garbage(w, grace_s=0) == 0
    assert {f"{a}.parquet", f"{b}.parquet"} <= set(_keys(s3, url, "labels/"))
    assert jobs.cli.main(["check", "--store", url]) == 1
    out = capsys.readouterr().out
    assert f"damaged: batch {b}-cbad: commit record: forged or damaged compaction record" in out
    assert jobs.cli.main(["compact", "--store", url, "--grace", "0"]) == 0      # merges a + b: every row kept
    capsys.readouterr()
    assert _count(Store(url, warn=lambda m: None), "labels") == 4
    assert Store(url, warn=lambda m: None).done_videos("m1") == {"a": "ok", "b": "ok"}


def test_a_writer_whose_lease_was_taken_stops_with_one_line_naming_the_taker(s3, url, monkeypatch):
    """A writer paused past its lease (no renewals) while another job takes the lease over and runs its
    recovery, which deletes the paused writer's uploaded but uncommitted shards: the paused writer stops with one
    line naming the job that took the lease, and nothing of its batch is committed."""
    monkeypatch.setenv("BIKE_LEASE_S", "3")
    s = Store(url, create=True)
    with s.lock() as held:
        s.write_batch(_rows("a"), "m1", {"a": "ok"})
        held._stop.set()
        held._thread.join()                                  # paused: its lease is no longer renewed
        taker = {}
        real_write_shard = s._write_shard

        def write_shard(key, rows):                          # the other job strikes mid-batch
            stats = real_write_shard(key, rows)
            if not taker:
                time.sleep(max(0.0, held.expires - time.time()) + 0.2)
                other = Store(url)
                taker["lease"] = other.lock()
                taker["lease"].__enter__()
                taker["removed"] = other.recover()
            return stats
        monkeypatch.setattr(s, "_write_shard", write_shard)
        try:
            with pytest.raises(StoreError) as e:
                s.write_batch(_rows("b"), "m1", {"b": "ok"})
        finally:
            taker["lease"].__exit__(None, None, None)
    msg = str(e.value)
    assert "\n" not in msg and "lost the writer lease" in msg, msg
    assert f"another job (pid {os.getpid()} on host {socket.gethostname()}" in msg and "took the lease over" in msg
    assert "nothing of the batch being written was committed" in msg
    assert taker["removed"]["uncommitted"] >= 1                # the taker's recovery deleted the uploaded shard
    r = Store(url)
    assert r.done_videos("m1") == {"a": "ok"} and not r.damaged and _count(r, "labels") == 2
