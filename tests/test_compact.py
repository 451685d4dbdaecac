"""Compaction (index/store/compact.py, ``bike compact``): every committed row exactly once before, during and after;
kill-safety; the clean-up after the grace period; search and the FAISS index unchanged; ``bike tag`` compacting
past its threshold."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import engine
from index.store import compact as compact_mod
from index.store.compact import collect_garbage, compact, plan
from index.search.search import Searcher
from index.store import Store
from index.search.vectors import open_index, update_index
from jobs.cli import main as bike
from searchstore import add_video, random_clips

T = 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ("videos", "clips", "labels", "attributes", "embeddings", "models")


@pytest.fixture(scope="module")
def labels():
    return engine.load_labels("ucf101")


def build(path, model, labels, videos: int, seed: int = 0, prefix: str = "v") -> "tuple[Store, str]":
    """A store of ``videos`` batches (one video of 2 clips each) + the models batch."""
    store = Store(path, create=True)
    rng = np.random.default_rng(seed)
    for v in range(videos):
        mid = add_video(store, model, labels, f"{prefix}{v:03d}", random_clips(rng, 2, T, model.embed_dim))
    return store, mid


def contents(path) -> dict:
    """Every visible row of every table (sorted), read through DuckDB like `bike sql`."""
    con = Store(path).connect()
    try:
        return {t: sorted(map(repr, con.execute(f"SELECT * EXCLUDE (model_id), model_id FROM {t}").fetchall()))
                for t in TABLES}
    finally:
        con.close()


def shard_count(path, table="clips") -> int:
    return len(list((path / table).glob("*.parquet")))


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tiny_model, labels):
    """A store of 30 one-video batches, kept pristine: tests copy it."""
    path = tmp_path_factory.mktemp("compact") / "store"
    _, mid = build(path, tiny_model, labels, 30)
    return path, mid


def copy(small_store, tmp_path):
    src, mid = small_store
    dst = tmp_path / "store"
    shutil.copytree(src, dst)
    return dst, mid


def test_compaction_keeps_every_row_once_in_few_large_shards(small_store, tmp_path):
    path, mid = copy(small_store, tmp_path)
    before = contents(path)
    done = Store(path).done_videos(mid)
    report = compact(Store(path), grace_s=0)
    assert report.batches_before == 31 and report.batches_after == 1 and report.merged == 31
    assert contents(path) == before
    assert Store(path).done_videos(mid) == done
    assert shard_count(path) == 1                        # grace 0: the merged shards are gone at once
    (shard,) = (path / "clips").glob("*.parquet")
    assert pq.ParquetFile(shard).metadata.num_row_groups == 1
    assert compact(Store(path), grace_s=0).groups == 0       # idempotent


def test_models_are_compacted_separately_and_large_batches_are_left_alone(small_store, tmp_path, tiny_model):
    path, mid = copy(small_store, tmp_path)
    other = engine.load_labels("hmdb51")
    _, mid2 = build(path, tiny_model, other, 5, prefix="w")
    before = contents(path)
    groups = plan(Store(path), target_bytes=10**12)
    assert sorted(len(g) for g in groups) == [6, 31] and all(len({c["model_id"] for c in g}) == 1 for g in groups)
    # with a target smaller than one batch nothing qualifies as small
    assert plan(Store(path), target_bytes=1) == []
    compact(Store(path), grace_s=0)
    assert contents(path) == before
    assert {c["model_id"] for c in Store(path).commits()} == {mid, mid2} and len(Store(path).commits()) == 2


def test_search_and_the_index_see_the_same_clips_after_compaction(small_store, tmp_path, tiny_model):
    path, mid = copy(small_store, tmp_path)
    update_index(Store(path), mid)
    queries = ["v003/1", "v017/0", "v029/1"]
    before = [[(r.clip_id, round(r.score, 5)) for r in Searcher(path, mid, model=tiny_model).search(clip=q, k=5)]
              for q in queries]
    compact(Store(path), grace_s=0)
    s = Searcher(path, mid, model=tiny_model)
    assert s.index_status() == []                                # a compaction does not make the index stale
    after = [[(r.clip_id, round(r.score, 5)) for r in s.search(clip=q, k=5)] for q in queries]
    assert after == before
    rep = update_index(Store(path), mid)
    assert rep.reason == "up to date" and rep.total == 60
    # new batches after the compaction extend it; a second compaction of old + new stays covered
    add_video(Store(path), tiny_model, engine.load_labels("ucf101"), "late", random_clips(np.random.default_rng(9), 2, T, tiny_model.embed_dim))
    rep = update_index(Store(path), mid)
    assert rep.added == 2 and rep.total == 62 and not rep.rebuilt
    compact(Store(path), grace_s=0)
    assert open_index(Store(path), mid).pending() == []
    assert len(open_index(Store(path), mid)) == 62


def test_replacement_after_compaction_rewrites_the_merged_shard(small_store, tmp_path, tiny_model, labels):
    path, mid = copy(small_store, tmp_path)
    compact(Store(path), grace_s=0)
    add_video(Store(path), tiny_model, labels, "v004", random_clips(np.random.default_rng(3), 3, T, tiny_model.embed_dim), replace=True)
    con = Store(path).connect()
    assert con.execute("SELECT count(*) FROM videos WHERE video_id = 'v004'").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM clips WHERE video_id = 'v004'").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM clips").fetchone()[0] == 61


def test_old_files_stay_for_the_grace_period_then_go_in_a_safe_order(small_store, tmp_path, tiny_model, labels):
    path, mid = copy(small_store, tmp_path)
    before = contents(path)
    compact(Store(path))                                        # default grace: old files kept for readers
    assert shard_count(path) == 31
    assert contents(path) == before
    # more batches and a second compaction that merges the first one: nested, still every row once
    build(path, tiny_model, labels, 3, seed=1, prefix="n")
    compact(Store(path))
    assert len(Store(path).commits()) == 1
    n = len(contents(path)["clips"])
    assert n == 66
    # a crash in the middle of a clean-up must not resurrect anything: drop one nested record's files only
    store = Store(path)
    assert collect_garbage(store, grace_s=600) == 0               # nothing past its grace yet
    removed = collect_garbage(store, grace_s=600, now=time.time() + 601)
    assert removed == 31 + 1 + 3
    assert shard_count(path) == 1 and len(list((path / "_commits").glob("*.json"))) == 1
    assert len(contents(path)["clips"]) == 66


def test_a_crash_before_the_commit_point_leaves_nothing_visible(small_store, tmp_path):
    path, mid = copy(small_store, tmp_path)
    before = contents(path)
    store = Store(path)
    members = plan(store)[0]
    # what a kill just before the commit record leaves: merged shards of an uncommitted batch
    dest = path / "clips" / f"{members[-1]['batch']}-cdead00.parquet"
    compact_mod._merge_table(store, "clips", members, dest, 1000)
    assert dest.exists() and contents(path) == before
    assert Store(path).recover()["uncommitted"] == 1 and not dest.exists()


KILLER = """
import sys
from index.store.compact import compact
from index.store import Store
compact(Store(sys.argv[1]), grace_s=0, target_bytes=int(sys.argv[2]))
"""


def _merged_records(store) -> int:
    return len(list((store / "_commits").glob("*-c*.json")))


#: Kill points, each observed on disk by polling: (name, predicate on the store folder).
KILL_POINTS = [
    ("a merged shard half written", lambda p: any(p.glob("*/.*.tmp"))),
    ("merged shards written, no record yet", lambda p: any((p / "clips").glob("*-c*.parquet"))),
    ("first merged batch committed", lambda p: _merged_records(p) >= 1),
    ("second merged batch committed", lambda p: _merged_records(p) >= 2),
    ("old files being deleted", lambda p: _merged_records(p) >= 1 and len(list((p / "clips").glob("*.parquet"))) < 31),
]


@pytest.mark.parametrize("point", range(len(KILL_POINTS)), ids=[k[0] for k in KILL_POINTS])
def test_sigkill_at_any_moment_then_rerun_is_exactly_once(small_store, tmp_path, point):
    path, mid = copy(small_store, tmp_path)
    before = contents(path)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    name, reached = KILL_POINTS[point]
    # a small target makes several groups, so kills land between commits as well as inside one
    p = subprocess.Popen([sys.executable, "-c", KILLER, str(path), str(30_000)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while p.poll() is None and not reached(path) and time.monotonic() < deadline:
        time.sleep(0.0005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, f"the compaction ended before '{name}' was seen"
    assert reached(path) or name == "a merged shard half written"   # (its .tmp is gone once renamed)
    assert contents(path) == before, f"killed at '{name}': rows lost or doubled"
    compact(Store(path), grace_s=0, target_bytes=30_000)              # the rerun finishes the job
    assert contents(path) == before
    assert not list(path.rglob("*.tmp"))


def test_readers_see_every_row_exactly_once_while_compacting(small_store, tmp_path):
    path, mid = copy(small_store, tmp_path)
    expect = contents(path)["clips"]
    stop = threading.Event()
    seen: list = []
    errors: list = []

    def reader():
        while not stop.is_set():
            try:
                con = Store(path).connect()
                rows = con.execute("SELECT count(*), count(DISTINCT clip_id) FROM clips").fetchone()
                con.close()
                seen.append(rows)
            except Exception as e:  # noqa: BLE001 - any failure is a test failure
                errors.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.2)
        n0 = len(seen)
        for _ in range(3):                         # several commit points: groups of ~6 batches, then re-merge
            compact(Store(path), target_bytes=30_000 * (1 + _ * 100))
        during = len(seen) - n0
    finally:
        time.sleep(0.2)
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors[:3]
    assert during >= 3 and set(seen) == {(len(expect), len(expect))}
    assert contents(path)["clips"] == expect


def test_compact_command(small_store, tmp_path, capsys):
    path, _ = copy(small_store, tmp_path)
    assert bike(["compact", "--store", str(path), "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert "merged 31 batches into 1 (31 → 1 batches" in out
    assert bike(["compact", "--store", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bike: error: ") and "no such store" in err and len(err.strip().splitlines()) == 1
    with Store(path).lock():                     # a running writer: a clear message, nothing touched
        assert bike(["compact", "--store", str(path)]) == 2
    assert "another job" in capsys.readouterr().err
    for bad in (["--grace", "-1"], ["--target-mb", "0"]):        # checked when the command line is parsed
        with pytest.raises(SystemExit) as e:
            bike(["compact", "--store", str(path), *bad])
        assert e.value.code == 2
    capsys.readouterr()
    assert bike(["compact", "--store", str(path), "--format", "json"]) == 0
    import json
    report = json.loads(capsys.readouterr().out)
    assert report["groups"] == 0 and report["batches_before"] == 1 and report["damaged"] == []


def test_bike_tag_compacts_when_the_store_passes_its_threshold(ray_cluster, tmp_path, capsys):
    from media import make_video
    src = tmp_path / "videos"
    src.mkdir()
    make_video(src / "a.mp4", seconds=2, fps=10, size=(64, 48), pattern="testsrc")
    base = (src / "a.mp4").read_bytes()
    for i in range(4):                               # distinct content ids
        (src / f"b{i}.mp4").write_bytes(base + b"\0" * (i + 1))
    store = tmp_path / "s"
    tiny = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51", "--labels", "dog,cat,surfing"]
    assert bike(["tag", str(src), "--store", str(store), *tiny, "--batch", "1", "--compact-at", "3",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bike tag: compact: merged 5 batches into 1" in out          # 5 one-video batches > 3
    assert "index flat" in out and "5 clips" in out
    s = Store(store)
    # one BIKE batch, and the batch of the subtitle channel (on by default; written after BIKE's)
    (bike_batch,) = [c for c in s.commits() if not c["model_id"].startswith("text:")]
    assert [c["model_id"] for c in s.commits() if c is not bike_batch] == ["text:subtitle"]
    con = s.connect()
    assert con.execute("SELECT count(*), count(DISTINCT video_id) FROM videos").fetchone() == (5, 5)
    rep = update_index(s, bike_batch["model_id"])
    assert rep.reason == "up to date" and rep.total == 5
