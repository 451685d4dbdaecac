"""User SQL latency in ``bike serve``: a fresh SQL process per query (as before the pool) against warm ones.

    .venv/bin/python bench/sqlbox.py                 # 5000 clips, ~2-3 min here; writes bench/results/sqlbox.json
    .venv/bin/python bench/sqlbox.py --requests 40

The store is bench/serve.py's synthetic one (``build_store``: real shards, FAISS index, the seeded random-init
``bike-tiny`` model). The same server code runs twice on it, on loopback (uvicorn, one process, started by this
script with ``--serve MODE``):

* ``per-query``: the server's :class:`index.store.sqlbox.Sandbox` made with ``warm=False, max_queries=1``: every
  query starts a fresh ``python -m index.store.sqlbox`` (interpreter, DuckDB and pyarrow imports, store opened),
  which is what every query paid before the pool;
* ``pool``: the server as ``bike serve`` runs it: ``Service.warm`` starts ``workers`` (4) children ahead.

Each mode is measured on ``/api/sql?q=SELECT 1``, on ``/api/search?q=...&where=...`` (a ``where`` filter runs
in the SQL process) and, for reference, the same search without ``where``, by 1 and by 4 concurrent clients
(threads with keep-alive ``httpx`` clients). Reported: median and p95 latency, errors. The machine is shared,
so compare the two modes within one run (the JSON records the load average).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from machine import machine  # noqa: E402 - bench/ is sys.path[0] when a bench script runs

WORKLOADS = {
    "sql SELECT 1": ("/api/sql", lambda i: {"q": "SELECT 1"}),
    "search + where": ("/api/search", lambda i: {"q": f"a person riding a bike {i}", "k": 10,
                                                  "where": "clip_index < 5 AND duration_s > 0"}),
    "search (no where)": ("/api/search", lambda i: {"q": f"a person riding a bike {i}", "k": 10}),
}


def serve(mode: str, store: str, port: int) -> None:
    """The server of one mode (run in a process of its own by :func:`main`)."""
    import uvicorn

    from index.store.sqlbox import Sandbox
    from jobs.serve.app import create_app
    from jobs.serve.limits import Limits
    from jobs.serve.service import Service
    svc = Service(store, limits=Limits(sql_seconds=30))
    if mode == "per-query":
        svc.sql_box = Sandbox(svc.limits.sql(), warm=False, max_queries=1)
        svc.searcher.sql_box = svc.sql_box
    svc.warm()
    uvicorn.Server(uvicorn.Config(create_app(svc, None), host="127.0.0.1", port=port, log_level="warning")).run()


def measure(base: str, path: str, params, clients: int, requests: int) -> dict:
    def one(i):
        with httpx.Client(base_url=base, timeout=120, headers={"X-Bike": "1"}) as c:
            out = []
            for j in range(i, requests, clients):
                t0 = time.perf_counter()
                r = c.get(path, params=params(j))
                out.append((time.perf_counter() - t0, r.status_code))
            return out
    with cf.ThreadPoolExecutor(clients) as pool:
        got = [x for part in pool.map(one, range(clients)) for x in part]
    ms = np.array([t for t, s in got if s == 200]) * 1000
    return {"clients": clients, "requests": len(got), "errors": sum(s != 200 for _, s in got),
            "median_ms": round(float(np.median(ms)), 1) if len(ms) else None,
            "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=5000)
    p.add_argument("--requests", type=int, default=60, help="requests per workload, mode and concurrency")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "sqlbox.json"))
    p.add_argument("--serve", choices=("per-query", "pool"), help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.store, args.port)
        return 0
    from serve import build_store
    from serving import free_port, stop, wait_healthy
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)}
    out = {"machine": machine(note="compare the two modes within this run; the load average says whether "
                                   "other work shared the machine"),
           "command": "python bench/sqlbox.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "clips": args.clips, "requests": args.requests, "sql_workers": 4, "results": []}
    with tempfile.TemporaryDirectory(prefix="bike-bench-sqlbox-") as tmp:
        store = build_store(Path(tmp) / "store", args.clips, log)
        for mode in ("per-query", "pool"):
            port = free_port()
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", mode, "--store",
                                     str(store.root), "--port", str(port)], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_healthy(proc, base)
                time.sleep(3.0)                              # the pool's children finish starting
                for name, (path, params) in WORKLOADS.items():
                    measure(base, path, params, 2, 8)        # warm-up (model text cache, connections)
                    for clients in (1, 4):
                        row = {"mode": mode, "workload": name, **measure(base, path, params, clients, args.requests)}
                        out["results"].append(row)
                        log(f"{mode:>9} {name:<18} {clients} client(s): median {row['median_ms']} ms, "
                            f"p95 {row['p95_ms']} ms, errors {row['errors']}")
            finally:
                stop(proc)
    out["machine"]["loadavg_end"] = list(os.getloadavg())
    lines = [f"bike serve: user SQL per-query process vs warm pool, {args.clips} clips, {args.requests} requests each",
             f"{'workload':<18} {'clients':>7} {'per-query med/p95 ms':>22} {'pool med/p95 ms':>18} {'errors':>7}"]
    rows = {(r["mode"], r["workload"], r["clients"]): r for r in out["results"]}
    for name in WORKLOADS:
        for clients in (1, 4):
            a, b = rows[("per-query", name, clients)], rows[("pool", name, clients)]
            pa, pb = f"{a['median_ms']} / {a['p95_ms']}", f"{b['median_ms']} / {b['p95_ms']}"
            lines.append(f"{name:<18} {clients:>7} {pa:>22} {pb:>18} {a['errors'] + b['errors']:>7}")
    print("\n".join(lines))
    out["table"] = lines
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
