"""What a store on object storage costs a reader: requests and wall time against moto's S3 server over loopback.

    python bench/s3store.py [--batches 50] [--repeat 3] [--out bench/results/s3store.json]

Writes the same ``--batches`` one-video batches (2 label rows each) into a local store and into
``s3://bench/st/`` on a moto server (tests/s3server.py), then times, ``--repeat`` times: a new ``Store`` +
``connect()`` + a label histogram (the work of ``bike sql`` after start-up), and ``commits(refresh=True)`` of an
unchanged store (what ``bike serve`` does when something changed). Requests are counted on both boto3 clients
(the store's own, and the s3fs one pyarrow reads shards through). moto is slow and loopback is not a network:
the request counts carry over to a real server, the times do not.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "s3store.json"))
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from machine import machine
    from s3server import moto_s3
    from test_store import _rows

    from index.store import Store
    from engine.sources import remote
    rows = []
    with moto_s3("bench"):
        url, local = "s3://bench/st/", Path(tempfile.mkdtemp(prefix="bike-bench-s3-")) / "st"
        for root in (local, url):
            s = Store(root, create=True)
            with s.lock():
                for i in range(args.batches):
                    s.write_batch(_rows(f"v{i}"), "m1", {f"v{i}": "ok"})
        count = {"n": 0}

        def hook(**_):
            count["n"] += 1
        remote.s3_client().meta.events.register("before-send.s3", hook)
        remote.filesystem(url)[0].s3.meta.events.register("before-send.s3", hook)

        def measure(name, where, fn):
            ts, reqs = [], []
            for _ in range(args.repeat):
                count["n"] = 0
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
                reqs.append(count["n"])
            rows.append({"case": name, "store": where, "batches": args.batches, "median_ms": round(
                statistics.median(ts) * 1000, 1), "min_ms": round(min(ts) * 1000, 1), "requests": max(reqs)})
            print(f"{name:<44} {where:<6} {rows[-1]['median_ms']:>8.1f} ms  {rows[-1]['requests']:>4} requests")

        for where, root in (("local", local), ("s3", url)):
            measure("Store() + connect() + label histogram", where, lambda root=root: Store(root).connect().execute(
                "SELECT label, count(*) FROM labels GROUP BY 1").fetchall())
            warm = Store(root)
            warm.commits()
            measure("commits(refresh=True), nothing changed", where, lambda warm=warm: warm.commits(refresh=True))
    out = {"machine": machine(note="moto server over loopback (in this process: it shares the CPU with the measured code)"), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
