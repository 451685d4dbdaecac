"""What the store's integrity checks and the DuckDB sandbox cost, on a store of many small batches.

    .venv/bin/python bench/integrity.py                  # 2000 batches (~1-2 min on 2 cores)
    .venv/bin/python bench/integrity.py --batches 500    # smaller

A store of B batches (one video, 2 clips each; six tables, 5 shards per batch) is written with
``Store.write_batch``. Then, each repeated and the median taken:

* ``commits()`` of a fresh reader: reading the commit records alone vs reading them AND checking every
  shard (size against the record) — the cost readers pay to skip damaged batches;
* ``connect()``: views over all shards on a plain DuckDB connection vs on the sandboxed one
  (``allowed_paths`` = every shard, external access off, settings locked), and one query through each;
* ``bike check`` (``index.store.check.check_store``): SHA-256 and row count of every shard.

Both variants of each pair run in the same process one after the other, so their ratio is meaningful even
on a shared machine; absolute times are not.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from index.store.check import check_store  # noqa: E402
from index.store import Store  # noqa: E402
from jobs.tag.records import ClipResult, ClipSpan, LabelRow, VideoResult, tables  # noqa: E402


def _video(i: int) -> VideoResult:
    clips = [ClipResult(ClipSpan(k, 10.0 * k, 10.0 * k + 10, [10.0 * k] * 8),
                        [LabelRow("dog", 0.9, 0.8, 0.5, [0.125] * 8, 10.0 * k)], [("phrase", 0.3)],
                        np.zeros((8, 64), np.float16), np.ones(64, np.float32)) for k in range(2)]
    return VideoResult(f"v{i:06d}", f"/videos/{i}.mp4", clips=clips)


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _plain_connect(store: Store):
    """The views of Store.connect() on an ordinary (unsandboxed) connection: the reference."""
    con = duckdb.connect(":memory:")
    for table in ("videos", "clips", "labels", "attributes", "embeddings"):
        paths = ", ".join(f"'{p}'" for p in store.files(table))
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{paths}], union_by_name=true)")
    return con


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "integrity.json"))
    args = ap.parse_args()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "st", create=True)
        t0 = time.perf_counter()
        for i in range(args.batches):
            v = _video(i)
            store.write_batch(tables("m1", [v]), "m1", {v.video_id: "ok"})
        write_s = time.perf_counter() - t0
        shards = sum(len(store.files(t)) for t in ("videos", "clips", "labels", "attributes", "embeddings"))

        records_only = _median(lambda: Store(store.root)._read_records(), args.repeat)
        with_checks = _median(lambda: Store(store.root).commits(), args.repeat)
        reader = Store(store.root)
        reader.commits()
        plain = _median(lambda: _plain_connect(reader).close(), args.repeat)
        sandboxed = _median(lambda: reader.connect().close(), args.repeat)
        q = "SELECT count(*) FROM labels WHERE label = 'dog'"
        plain_q = _median(lambda: _plain_connect(reader).execute(q).fetchall(), args.repeat)
        sandboxed_q = _median(lambda: reader.connect().execute(q).fetchall(), args.repeat)
        check_s = _median(lambda: check_store(Store(store.root)), max(1, args.repeat // 2))
        report = check_store(Store(store.root))
        assert report.ok and report.shards == shards

    rows = [
        ("open the store: commit records only", records_only),
        ("open the store: records + shard checks", with_checks),
        ("connect(): plain DuckDB views", plain),
        ("connect(): sandboxed DuckDB views", sandboxed),
        ("connect + query: plain", plain_q),
        ("connect + query: sandboxed", sandboxed_q),
        ("bike check (SHA-256 + rows of every shard)", check_s),
    ]
    print(f"store: {args.batches} batches, {shards} shards (written in {write_s:.1f} s)")
    print(f"{'step':<46} {'median s':>9}")
    for name, s in rows:
        print(f"{name:<46} {s:>9.4f}")
    ratios = {"shard_checks_vs_records_only": with_checks / records_only,
              "sandboxed_vs_plain_connect": sandboxed / plain,
              "sandboxed_vs_plain_connect_and_query": sandboxed_q / plain_q}
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    result = {
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "duckdb": duckdb.__version__,
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "loadavg_1_5_15": list(os.getloadavg()),
                    "note": "a shared 2-core machine: other engineers' jobs ran beside the benchmark (see "
                            "loadavg); compare the ratios, measured within one run, not absolute times"},
        "batches": args.batches, "shards": shards, "write_s": write_s,
        "median_s": {name: s for name, s in rows}, "ratios": ratios,
        "seconds": time.perf_counter() - t_all,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
