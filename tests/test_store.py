"""The store's all-or-nothing batches, recovery after a crash, and replacement (index/store.py)."""
import json

import pyarrow as pa
import pytest

from index.schema import MODELS
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
