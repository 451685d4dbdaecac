"""User SQL is bounded in memory, time and result size (index/store/sqlbox.py): on a real ``bike serve`` (uvicorn on
loopback) under several bombs at once, and in ``bike sql`` on the command line. DuckDB's messages keep their
lines in JSON and become one readable line on the CLI.

The bombs are the ones of the issue, sized so that an unbounded run would cost a few GB, not tens: a list
built by one scalar call (``list_sum(range(N))``: outside DuckDB's memory_limit, not interruptible), a result
larger than the byte cap, a join that runs forever, and a ``where`` condition that builds a list per clip.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import engine
from index.store.sql import one_line
from servestore import make_store

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
       "HF_HUB_OFFLINE": "1"}

MEMORY_BOMB = "SELECT list_sum(range(60000000))"                  # ~4 GB unbounded
BYTES_BOMB = "SELECT repeat('x', 1000000) AS x FROM range(40)"      # 40 MB of JSON
TIME_BOMB = "SELECT sum(hash(range)) FROM range(100000000000)"      # hours, in constant memory
WHERE_BOMB = "list_sum(range(60000000 + clip_index)) > 0"


def run_measured(argv: "list[str]", tmp: Path) -> "tuple[int, str, str, float]":
    """Run ``argv`` → (exit status, stdout, stderr, its max RSS in MB) (tests/bounded.py: measured apart from
    this pytest process's own RSS; killed only past 8 GB or 180 s, so the command's own bounds are tested)."""
    from bounded import run_bounded
    rc, out, err, peak, _ = run_bounded(argv, 8e9, 180, env=ENV)
    return rc, out, err, peak / (1 << 20)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model):
    return make_store(tmp_path_factory.mktemp("bounds"), tiny_model, engine.load_labels("ucf101"))


@pytest.fixture(scope="module")
def server(corpus):
    store = corpus[0]
    from liveserver import bike_serve
    with bike_serve(store.root, "--sql-memory", "256MB", "--sql-timeout", "10", "--sql-max-bytes", "4MB",
                    env=ENV) as (proc, base):
        yield proc, base


@pytest.mark.parametrize("kind,request_,statuses,says", [
    ("memory", ("/api/sql", {"q": MEMORY_BOMB}), {413}, "memory limit of 256 MB"),
    ("bytes", ("/api/sql", {"q": BYTES_BOMB}), {413}, "result too large"),
    ("time", ("/api/sql", {"q": TIME_BOMB}), {408}, "time limit of 10 s"),
    ("where", ("/api/search", {"q": "walking", "where": WHERE_BOMB}), {413}, "memory limit"),
])
def test_four_bombs_at_once_leave_the_server_answering(server, kind, request_, statuses, says):
    proc, base = server
    path, params = request_
    before = rss_mb(proc.pid)
    peak = [before]
    health: "list[float]" = []
    done = threading.Event()

    def watch():                                  # /api/health and the server's RSS while the bombs run
        with httpx.Client(base_url=base, timeout=30) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                assert c.get("/api/health").status_code == 200
                health.append(time.perf_counter() - t0)
                peak[0] = max(peak[0], rss_mb(proc.pid))
                time.sleep(0.1)

    def bomb(_):
        with httpx.Client(base_url=base, timeout=60) as c:
            t0 = time.perf_counter()
            r = c.get(path, params=params)
            return r.status_code, r.json(), time.perf_counter() - t0

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(bomb, range(4)))
    finally:
        done.set()
        watcher.join()
    for status, body, seconds in answers:
        assert status in statuses and says in body["error"], (status, body)
        assert body["status"] == status
        assert seconds < 10 + 10                   # the time limit covers the request (margin: a loaded machine)
    assert health and max(health) < 3, health     # the server kept answering (each took milliseconds when idle)
    assert peak[0] - before < 150, (before, peak)  # what a bomb allocates is never the server's (unbounded: GBs)
    with httpx.Client(base_url=base, timeout=30) as c:   # normal queries work afterwards
        assert c.get("/api/sql", params={"q": "SELECT count(*) AS n FROM clips"}).json()["rows"] == [[5]]
        res = c.get("/api/search", params={"q": "walking", "k": 2, "where": "clip_index = 0"}).json()
        assert len(res["results"]) == 2


def test_sql_errors_keep_their_lines_in_json_and_become_one_line_on_the_cli(server, corpus, capsys, monkeypatch):
    proc, base = server
    body = httpx.get(base + "/api/sql", params={"q": "SELECT nosuchcol FROM videos"}, timeout=30).json()
    assert "\\n" not in body["error"] and "\nLINE 1: SELECT nosuchcol FROM videos\n" in body["error"]
    assert 'Candidate bindings' in body["error"]
    import jobs.cli
    monkeypatch.setattr(jobs.cli.entry, "COMMANDS", ["sql"])
    assert jobs.cli.main(["sql", "--store", str(corpus[0].root), "SELECT nosuchcol FROM videos"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\\n" not in err, err
    assert 'Referenced column "nosuchcol" not found' in err and 'at "nosuchcol" in line 1: SELECT nosuchcol FROM videos' in err


def test_one_line_joins_duckdb_lines_readably():
    msg = 'Parser Error: syntax error at or near "SELEC"\n\nLINE 1: SELEC 1 FROM t\n        ^^^^^'
    assert one_line(msg) == 'Parser Error: syntax error at or near "SELEC"; at "SELEC" in line 1: SELEC 1 FROM t'


@pytest.mark.parametrize("sql,extra,says", [
    (MEMORY_BOMB, ["--sql-memory", "256MB"], "memory limit of 256 MB"),
    (BYTES_BOMB, ["--sql-max-bytes", "4MB"], "result too large: over the limit of 4 MB"),
    (TIME_BOMB, ["--sql-timeout", "3"], "time limit of 3 s"),
])
def test_bike_sql_bombs_stop_with_one_line_and_bounded_memory(corpus, tmp_path, sql, extra, says):
    t0 = time.perf_counter()
    code, out, err, peak_mb = run_measured([sys.executable, "-m", "jobs.cli", "sql", "--store", str(corpus[0].root),
                                            *extra, sql], tmp_path)
    seconds = time.perf_counter() - t0
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("bike: error: ") and err.count("\n") == 1 and says in err, err
    assert peak_mb < 700, peak_mb     # the CLI and its query process, each (unbounded: GBs)
    assert seconds < 60


def test_where_in_bike_search_is_bounded(corpus):
    r = subprocess.run([sys.executable, "-m", "jobs.cli", "search", "--store", str(corpus[0].root), "walking",
                        "--where", WHERE_BOMB, "--sql-memory", "256MB"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 2 and "memory limit of 256 MB" in r.stderr and r.stderr.count("\n") == 1, r.stderr
