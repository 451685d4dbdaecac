"""The warm pool of SQL processes (index/store/sqlbox.py): queries reuse ready children instead of starting one each;
a child that is killed, hits a bound or served its quota is replaced and the next query answers; a reused
child sees a batch committed after it opened the store; children end with their parent.

Real child processes on a real store (tests/servestore.py); no timing asserts beyond generous bounds.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import engine
from index.store.sqlbox import Sandbox, SQLLimitError, SQLLimits
from searchstore import add_video
from servestore import make_store

ROOT = Path(__file__).resolve().parents[1]
TIME_BOMB = "SELECT sum(hash(range)) FROM range(100000000000)"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model):
    return make_store(tmp_path_factory.mktemp("pool"), tiny_model, engine.load_labels("ucf101"))


def count(box, store, table="videos") -> int:
    return box.rows(store, f"SELECT count(*) FROM {table}")[1][0][0]


def gone(pid: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(line.startswith("State:") and "Z" in line for line in f):
                    return True                      # a zombie: ended, waiting to be reaped by its parent
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_warm_children_serve_many_queries_without_new_starts(corpus):
    store = corpus[0]
    box = Sandbox(SQLLimits(workers=2, seconds=30), warm=True)
    try:
        assert box.ready(2), "children did not start"
        pids = box.pids()
        for _ in range(10):
            assert count(box, store) == 3
            assert box.where(store, corpus[1], "clip_index = 0")
        assert box.started == 2 and box.pids() == pids    # no query paid a start
    finally:
        box.close()
    assert all(gone(p, 5) for p in pids)


def test_a_killed_or_timed_out_child_is_replaced_and_the_next_query_answers(corpus):
    store = corpus[0]
    box = Sandbox(SQLLimits(workers=2, seconds=2), warm=True)
    try:
        assert box.ready(2)
        victim = box.pids()[0]
        os.kill(victim, signal.SIGKILL)              # killed while idle (the OOM killer, an operator)
        assert gone(victim, 5)
        for _ in range(4):                           # whichever child a query gets, it answers
            assert count(box, store) == 3
        assert box.ready(2) and victim not in box.pids()
        before = set(box.pids())
        with pytest.raises(SQLLimitError) as e:      # over the time limit: that child is ended, a new one starts
            box.rows(store, TIME_BOMB)
        assert e.value.kind == "time" and e.value.status == 408
        assert box.ready(2), "the replacement did not start"
        assert len(set(box.pids()) - before) == 1 and box.started == 4
        assert count(box, store) == 3
    finally:
        box.close()


def test_a_child_is_recycled_after_its_quota_and_after_a_memory_bound(corpus):
    store = corpus[0]
    box = Sandbox(SQLLimits(workers=1, seconds=30, memory_bytes=128 << 20), max_queries=3)
    try:
        for _ in range(7):
            assert count(box, store) == 3
        assert box.started == 3                      # 3 + 3 + 1 queries: started on demand (not warm)
        with pytest.raises(SQLLimitError) as e:
            box.rows(store, "SELECT list_sum(range(60000000))")
        assert e.value.kind == "memory"
        assert count(box, store) == 3                # the child that hit the bound is not reused
        assert box.started == 4                      # the third child took the bomb; a fourth answers
    finally:
        box.close()


def test_a_reused_child_sees_a_batch_committed_after_it_opened_the_store(tmp_path, tiny_model):
    labels = engine.load_labels("ucf101")
    store, _, _ = make_store(tmp_path, tiny_model, labels)
    box = Sandbox(SQLLimits(workers=1, seconds=30), warm=True)
    try:
        assert count(box, store) == 3 and count(box, store, "clips") == 5
        writer = type(store)(store.root)             # another process's view, as `bike tag` has
        rng = np.random.default_rng(3)
        add_video(writer, tiny_model, labels, "newvideo01",
                  [np.asarray(rng.standard_normal((8, tiny_model.embed_dim)), np.float32) for _ in range(2)],
                  duration_s=20.0)
        assert count(box, store) == 4 and count(box, store, "clips") == 7
        assert box.started == 1                      # the same child, its store re-read
    finally:
        box.close()


CHILDREN_OF_A_DEAD_PARENT = """
import sys, time
from index.store.sqlbox import Sandbox, SQLLimits
from index.store import Store
box = Sandbox(SQLLimits(workers=2, seconds=60), warm=True)
assert box.ready(2)
print(*box.pids(), flush=True)
box.rows(Store(sys.argv[1]), sys.argv[2])
"""


def test_children_end_with_their_parent_even_mid_query(corpus):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", CHILDREN_OF_A_DEAD_PARENT, str(corpus[0].root), TIME_BOMB],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2, pids
        time.sleep(1.0)                              # one child is now running the 60 s query
        parent.kill()                                # no clean-up code runs in the parent
        parent.wait()
        assert all(gone(p, 5) for p in pids), [p for p in pids if not gone(p, 0)]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
