"""The store's all-or-nothing batches, recovery after a crash, and replacement (index/store/core.py)."""
import json

import pyarrow as pa
import pytest

from index.store.schema import MODELS
from index.store import COMMITS, Store, StoreError, atomic_write


def _rows(video_id, model_id="m1", n=2, label="dog"):
    return {
        "labels": pa.table({"clip_id": [f"{video_id}/{i}" for i in range(n)], "video_id": [video_id] * n,
                            "model_id": [model_id] * n, "rank": [0] * n, "label": [label] * n,
                            "score": [0.5] * n, "video_score": [0.5] * n, "attribute_score": [0.5] * n,
                            "saliency": [[0.5, 0.5]] * n, "peak_s": [0.0] * n}),
        "attributes": pa.table({"clip_id": [f"{video_id}/0"], "video_id": [video_id], "model_id": [model_id],
                                "rank": [0], "attribute": ["ride bike"], "score": [0.3]}),
    }


def _count(store, table, where="true"):
    return store.connect().execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]


def test_batches_are_visible_once_committed(tmp_path):
    s = Store(tmp_path / "st", create=True)
    s.write_batch(_rows("a"), "m1", {"a": "ok"})
    s.write_batch(_rows("b"), "m1", {"b": "ok"})
    reader = Store(tmp_path / "st")                     # a fresh reader sees both batches, once
    assert _count(reader, "labels") == 4 and _count(reader, "attributes") == 2
    assert reader.done_videos("m1") == {"a": "ok", "b": "ok"} and reader.done_videos("m2") == {}
    assert _count(reader, "clips") == 0                  # empty tables are typed, queryable views


def test_a_column_older_shards_lack_reads_as_null_in_sql(tmp_path, monkeypatch):
    """docs/architecture.md's recipe for a new column (schema + the rows' writer): shards written before it
    existed read as NULL in the SQL views, also when every shard of the table is such an old one."""
    from index.store.schema import TABLES
    new = TABLES["labels"]
    old = pa.schema([f for f in new if f.name != "peak_s"])         # labels as written before peak_s
    s = Store(tmp_path / "st", create=True)
    rows = _rows("a")
    monkeypatch.setitem(TABLES, "labels", old)
    s.write_batch({"labels": rows["labels"].drop_columns(["peak_s"])}, "m1", {"a": "ok"})
    monkeypatch.setitem(TABLES, "labels", new)
    con = Store(tmp_path / "st").connect()
    assert con.execute("SELECT count(*), count(peak_s) FROM labels").fetchone() == (2, 0)
    assert [d[0] for d in con.execute("SELECT * FROM labels").description] == new.names
    s.write_batch(_rows("b"), "m1", {"b": "ok"})                    # a new shard beside the old one
    con = Store(tmp_path / "st").connect()
    assert con.execute("SELECT count(*), count(peak_s) FROM labels").fetchone() == (4, 2)


def test_crash_before_commit_record_leaves_nothing_visible_and_recover_cleans(tmp_path):
    s = Store(tmp_path / "st", create=True)
    s.write_batch(_rows("a"), "m1", {"a": "ok"})
    # a writer killed after renaming one shard into place, before its commit record: an orphan shard,
    # and one killed in the middle of writing a shard: a temporary file
    orphan = s.root / "labels" / "99999999999999999999-deadbeef.parquet"
    atomic_write(orphan, lambda tmp: __import__("pyarrow.parquet").parquet.write_table(_rows("z")["labels"], tmp))
    (s.root / "labels" / ".half.parquet.123456.tmp").write_bytes(b"PAR1 half a file")
    reader = Store(tmp_path / "st")
    assert _count(reader, "labels") == 2 and "z" not in reader.done_videos("m1")
    assert reader.recover() == {"tmp": 1, "uncommitted": 1, "replacements": 0}
    assert not orphan.exists() and _count(Store(tmp_path / "st"), "labels") == 2


def test_replace_supersedes_older_rows_of_the_same_model_only(tmp_path):
    s = Store(tmp_path / "st", create=True)
    models = pa.Table.from_pylist([{"model_id": "m1", "name": "x"}], schema=MODELS)
    s.write_batch(_rows("a") | {"models": models}, "m1", {"a": "ok"})
    s.write_batch(_rows("b"), "m1", {"b": "ok"})
    s.write_batch(_rows("a", model_id="m2"), "m2", {"a": "ok"})
    s.write_batch(_rows("a", label="cat"), "m1", {"a": "ok"}, replace=True)
    r = Store(tmp_path / "st")
    assert _count(r, "labels", "model_id = 'm1' AND video_id = 'a'") == 2
    assert _count(r, "labels", "model_id = 'm1' AND video_id = 'a' AND label = 'cat'") == 2
    assert _count(r, "labels", "model_id = 'm2'") == 2 and _count(r, "labels", "video_id = 'b'") == 2
    assert _count(r, "models") == 1


def test_interrupted_replacement_is_finished_by_recover(tmp_path):
    s = Store(tmp_path / "st", create=True)
    s.write_batch(_rows("a"), "m1", {"a": "ok"})
    s._supersede = lambda record: None                  # killed right after the replacing batch committed
    batch = s.write_batch(_rows("a", label="cat"), "m1", {"a": "ok"}, replace=True)
    rec = json.loads((s.root / COMMITS / f"{batch}.json").read_text())
    assert rec["cleaned"] is False
    r = Store(tmp_path / "st")
    assert r.recover()["replacements"] == 1
    assert _count(Store(tmp_path / "st"), "labels", "video_id = 'a'") == 2
    assert _count(Store(tmp_path / "st"), "labels", "label = 'dog'") == 0


def test_bad_store_paths(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        Store(f, create=True)
    with pytest.raises(StoreError, match="no such store"):
        Store(tmp_path / "missing")
    with pytest.raises(StoreError, match="unknown table"):
        Store(tmp_path / "st", create=True).write_batch({"nope": pa.table({"a": [1]})}, "m", {})


def test_one_writer_at_a_time(tmp_path):
    s = Store(tmp_path / "st", create=True)
    with s.lock():
        with pytest.raises(StoreError, match="another job"):
            with Store(tmp_path / "st").lock():
                pass
    with Store(tmp_path / "st").lock():                  # released when the first writer is done
        pass


# ---- malformed commit records and lease objects: a bounded, seeded fuzz ----------------------------------
import random  # noqa: E402
import shutil  # noqa: E402

from index.store.check import check_store  # noqa: E402
from index.store.compact import collect_garbage, compact  # noqa: E402
from index.store.lease import Lease  # noqa: E402
from index.store.storefs import LocalFS  # noqa: E402

_ODD = [None, True, -1, 0, 1.5, float("inf"), 10**30, "", "x", "../../etc/passwd.parquet", [], [1], {}, {"a": [1]},
        [[[[[]]]]], {"labels": -3}, {"labels": "2"}, ["00000000000000000001-deadbeef"]]


def _mutate(rng: random.Random, rec: dict) -> "bytes":
    """One malformed (or oddly valid) variant of ``rec``: a key removed, a value of another type, a value
    nested deeper, a field inside ``tables``/``files``/``videos`` changed, or not a record at all."""
    rec = json.loads(json.dumps(rec))
    kind = rng.randrange(6)
    key = rng.choice(sorted(rec))
    if kind == 0:
        rec.pop(key)
    elif kind == 1:
        rec[key] = rng.choice(_ODD)
    elif kind == 2:
        rec[key] = rng.choice([[rec[key]], {"x": rec[key]}])
    elif kind == 3:
        inner = rng.choice([k for k in ("tables", "files", "videos", "compacted", "shards") if k in rec] or [key])
        if isinstance(rec.get(inner), dict) and rec[inner]:
            rec[inner][rng.choice(sorted(rec[inner]))] = rng.choice(_ODD)
        else:
            rec[inner] = rng.choice(_ODD)
    elif kind == 4:
        return rng.choice([b"[" * 100_000 + b"]" * 100_000, b"{\"batch\": ", b"\xff\xfe", b"[]", b"null", b"1e999",
                           json.dumps({"tables": [1]}).encode()])
    else:
        rec[rng.choice(["tables", "videos", "files"])] = [1]
    return json.dumps(rec).encode()


def _visible_labels(root) -> int:
    con = Store(root, warn=lambda m: None).connect()
    try:
        return con.execute("SELECT count(*) FROM labels").fetchone()[0]
    finally:
        con.close()


def test_malformed_commit_records_never_traceback_and_lose_nothing(tmp_path):
    """~100 seeded mutations of a plain and of a compacted commit record: every reader, `bike check`, recovery
    and the clean-up run without a traceback, the other batches' rows stay visible, and no clean-up ever makes
    a visible row disappear."""
    plain = tmp_path / "plain"
    s = Store(plain, create=True)
    a, b, c = (s.write_batch(_rows(v), "m1", {v: "ok"}) for v in "abc")
    merged = tmp_path / "merged"
    shutil.copytree(plain, merged)
    compact(Store(merged))                                       # grace: the merged batches stay on disk
    (crec,) = Store(merged).commits()
    rng = random.Random(18)
    for i in range(100):
        src, name = (plain, b) if i % 2 else (merged, crec["batch"])
        root = tmp_path / f"case{i}"
        shutil.copytree(src, root)
        body = _mutate(rng, json.loads((src / COMMITS / f"{name}.json").read_text()))
        (root / COMMITS / f"{name}.json").write_bytes(body)
        warnings: list = []
        r = Store(root, warn=warnings.append)
        r.commits()
        assert len(warnings) <= 1 and all("\n" not in w for w in warnings), (i, warnings)
        before = _visible_labels(root)
        # nothing lost: the other batches' rows, and every row of a compaction or else of its merged batches
        # (a compacted record altered to name fewer batches may show some rows twice; never fewer)
        assert before in (4, 6) if src is plain else before >= 6, (i, body[:300], before, r.damaged)
        report = check_store(Store(root, warn=lambda m: None))
        assert report.ok == (not r.damaged), (i, body[:300])
        assert all("\n" not in line for line in report.lines())
        w = Store(root, warn=lambda m: None)
        with w.lock():
            w.recover()
            collect_garbage(w, grace_s=0)
        assert _visible_labels(root) == before, (i, body[:300])
        shutil.rmtree(root)


@pytest.mark.parametrize("seed", range(4))
def test_malformed_lease_objects_are_one_line_and_taken_over_only_by_the_rule(tmp_path, seed):
    """Seeded malformed `_lock.json` objects (wrong types, nesting, missing keys): taking the lease either
    succeeds (expired, a dead pid of this host, or no valid expiry) or fails with one line; never a traceback."""
    import os
    import socket
    import time
    rng = random.Random(seed)
    good = {"host": "elsewhere", "pid": 1, "started": time.time(), "expires": time.time() + 3600, "token": "t",
            "ttl_s": 60.0}
    for i in range(25):
        holder = dict(good)
        for _ in range(rng.randrange(1, 3)):
            key = rng.choice(sorted(good))
            if rng.random() < 0.3:
                holder.pop(key, None)
            else:
                holder[key] = rng.choice(_ODD + [[holder.get(key)], {"v": holder.get(key)}])
        body = json.dumps(holder).encode() if rng.random() < 0.9 else rng.choice([b"[" * 50_000, b"{", b"[1]"])
        d = tmp_path / f"l{seed}-{i}"
        d.mkdir()
        (d / "_lock.json").write_bytes(body)
        warned: list = []
        lease = Lease(LocalFS(d), error=StoreError, ttl=60)
        lease.warn = warned.append
        expires = holder.get("expires") if isinstance(holder, dict) else None
        live = type(expires) in (int, float) and expires > time.time() + 1 and expires != float("inf") \
            and body.startswith(b"{\"")
        try:
            lease.acquire()
        except StoreError as e:
            assert "\n" not in str(e) and "another job" in str(e), (body, e)
            assert live, ("refused a lease with no valid expiry", body)
        else:
            lease.release()
            assert not live or holder.get("host") == socket.gethostname(), ("took a live lease over", body)
            assert len(warned) <= 1
        assert os.getpid()


def test_a_batch_id_whose_random_part_starts_with_c_is_no_compaction(tmp_path):
    from index.store import validate
    rec = {"batch": "01796528216900002472-c823135a", "model_id": "m", "videos": {}, "tables": {}}
    assert validate.commit_record(json.dumps(rec).encode(), rec["batch"]) == rec
    merged = {**rec, "batch": rec["batch"] + "-c1f2e3d"}
    with pytest.raises(validate.Malformed, match="no 'compacted' list"):
        validate.commit_record(json.dumps(merged).encode(), merged["batch"])
