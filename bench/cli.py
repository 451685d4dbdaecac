"""Start-up of the `bike` command: wall time of commands that should feel instant, and what they import.

    python bench/cli.py [--repeat 5] [--out bench/results/cli.json]

Builds a small store once (`bike tag` of 3 generated clips with bike-tiny, random weights), then times, each
``--repeat`` times in a fresh process: ``bike --help``, ``bike sql`` (a one-row query), ``bike index`` (the
index is up to date: no model), ``bike tag`` rerun with nothing to do (no Ray), and for reference ``python -c
pass`` and ``import torch``. Prints a table (median and min seconds) and writes the JSON with the machine and
its load average (other jobs may share the CPU: compare rows of one run, not runs).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TINY = ["--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51", "--labels", "dog,cat,surfing"]


def timed(cmd: "list[str]", env: dict, repeat: int) -> "list[float]":
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        out.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-1500:]}")
    return out


def heavy_imports(argv: "list[str]", env: dict) -> "list[str]":
    code = ("import sys, jobs.cli\n"
            "try:\n    jobs.cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'open_clip', 'ray', 'faiss', 'duckdb', 'pyarrow') if m in sys.modules],"
            " file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, cwd=ROOT)
    return json.loads(res.stderr.strip().splitlines()[-1].replace("'", '"'))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cli.json"))
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    from media import make_video
    work = Path(tempfile.mkdtemp(prefix="bike-bench-cli-"))
    corpus, store = work / "corpus", work / "store"
    corpus.mkdir()
    for i in range(3):
        make_video(corpus / f"v{i}.mp4", seconds=2 + i)
    bike = [sys.executable, "-m", "jobs.cli"]
    t0 = time.perf_counter()
    subprocess.run([*bike, "tag", str(corpus), "--store", str(store), "--no-progress", *TINY], env=env, check=True,
                   capture_output=True, cwd=ROOT)
    first_tag = time.perf_counter() - t0
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "bike --help": [*bike, "--help"],
        "bike sql (one row)": [*bike, "sql", "--store", str(store), "SELECT count(*) FROM videos"],
        "bike index (up to date)": [*bike, "index", "--store", str(store)],
        "bike tag (rerun, nothing to do)": [*bike, "tag", str(corpus), "--store", str(store), *TINY],
    }
    rows = []
    load0 = os.getloadavg()
    for name, cmd in cases.items():
        ts = timed(cmd, env, args.repeat)
        rows.append({"command": name, "median_s": round(statistics.median(ts), 3), "min_s": round(min(ts), 3),
                     "runs": [round(t, 3) for t in ts]})
    imports = {"bike --help": heavy_imports(["--help"], env),
               "bike sql": heavy_imports(["sql", "--store", str(store), "SELECT 1"], env)}
    print(f"{'command':<34} {'median s':>9} {'min s':>7}")
    for r in rows:
        print(f"{r['command']:<34} {r['median_s']:>9.3f} {r['min_s']:>7.3f}")
    print(f"first `bike tag` of the 3 clips (starts Ray): {first_tag:.1f} s")
    print(f"heavy modules imported: {imports}")
    result = {"bench": "cli", "command": " ".join([sys.executable, *sys.argv]), "rows": rows,
              "first_tag_s": round(first_tag, 1), "heavy_imports": imports,
              "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "platform": platform.platform(), "load_average_before": load0,
                          "load_average_after": os.getloadavg()},
              "note": "measured while other jobs shared the machine (see load averages); medians of fresh "
                      "processes; compare rows within this run"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
