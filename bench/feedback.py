"""Tags from examples vs a text query: precision@10 on a generated corpus of a few visual kinds.

    .venv/bin/python bench/feedback.py                  # 6 kinds × 30 videos, writes bench/results/feedback.json
    .venv/bin/python bench/feedback.py --per-kind 20    # smaller (at least 20: 10 positives + 10 to find)

The corpus: short H.264 videos (3 s, 8 fps, sizes varied) of six visual kinds that ffmpeg generates
(``lavfi``): fractal zooms (mandelbrot at random places), one-dimensional cellular automata (random rules),
the game of life (random seeds and densities), colour bars (SMPTE / HD bars, random hue shift), the testsrc2
pattern (random sizes, hue shifts), and grey-ish flat colours under moving noise (random levels). ``bike tag`` tags them with
the seeded random-init ``bike-tiny`` model, one clip per video (``--window 0``), as a user would.

For each kind, three ways to find its clips among all of them, scored as precision@10 (the fraction of the
ten best clips, examples left out, that are of the kind):

* **text alone**: ``Searcher.search(description, k=10)`` (every clip is re-ranked: a small store);
* **tag from 3 positives** / **from 10 positives**: ``bike label``'s scoring (index/search/usertags.py
  ``score_label``) from that many clips of the kind picked at random, no query (averaged over ``--trials``
  random picks);
* **3 positives + the query**: the same with the text description as ``--query``.

The model has RANDOM WEIGHTS: its text tower maps words to meaningless directions, so text alone is at chance
(1 / kinds); the tags must work from the examples alone (issue target: precision@10 >= 0.8 from 3 positives).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine as bench_machine  # noqa: E402  (bench/ is sys.path[0] when a bench script runs)

KINDS = {
    "fractal": "a fractal zoom",
    "cellauto": "a cellular automaton growing line by line",
    "life": "the game of life",
    "bars": "television colour bars",
    "testsrc": "a test pattern with a moving counter",
    "noise": "a grey screen with noise",
}
SIZES = ((96, 64), (112, 80), (128, 96), (80, 64))


def source(kind: str, rng, w: int, h: int) -> "tuple[str, list]":
    """The lavfi source and extra filters of one video of ``kind``."""
    s = f"size={w}x{h}:rate=8"
    if kind == "fractal":
        return (f"mandelbrot={s}:start_x={-0.75 + rng.uniform(-0.3, 0.3):.4f}:"
                f"start_y={rng.uniform(-0.3, 0.3):.4f}:start_scale={rng.uniform(2, 4):.2f}"), []
    if kind == "cellauto":
        return f"cellauto={s}:rule={int(rng.choice([18, 22, 30, 45, 73, 90, 105, 110, 150]))}:random_seed={int(rng.integers(1 << 30))}", []
    if kind == "life":
        return (f"life={s}:seed={int(rng.integers(1 << 30))}:ratio={rng.uniform(0.1, 0.5):.2f}:"
                f"mold={int(rng.integers(0, 40))}"), []
    if kind == "bars":
        return f"{rng.choice(['smptebars', 'smptehdbars'])}={s}", [f"hue=h={rng.uniform(-30, 30):.1f}"]
    if kind == "testsrc":
        return f"testsrc2={s}", [f"hue=h={rng.uniform(-20, 20):.1f}"]
    if kind == "noise":
        r, g, b = (int(np.clip(x, 0, 255)) for x in int(rng.integers(64, 192)) + rng.integers(-12, 13, 3))
        return f"color=c=0x{r:02x}{g:02x}{b:02x}:{s}", ["noise=alls=30:allf=t+u"]
    raise ValueError(kind)


def make_corpus(folder: Path, per_kind: int, seed: int) -> "dict[str, str]":
    """Write the videos → {file name: kind}."""
    from engine.video import ffmpeg_exe
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for kind in KINDS:
        for i in range(per_kind):
            w, h = SIZES[int(rng.integers(len(SIZES)))]
            src, filters = source(kind, rng, w, h)
            name = f"{kind}_{i:03d}.mp4"
            vf = ["-vf", ",".join(filters + ["format=yuv420p"])]
            subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", src, "-t", "3", *vf, "-c:v", "libx264",
                            "-preset", "ultrafast", str(folder / name)], check=True)
            kinds[name] = kind
    return kinds


def precision_at(ranked_ids, kind_of, kind: str, exclude=(), k: int = 10) -> float:
    top = [c for c in ranked_ids if c not in set(exclude)][:k]
    return sum(kind_of[c] == kind for c in top) / k


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-kind", type=int, default=30)
    p.add_argument("--trials", type=int, default=5, help="random picks of the positives per kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "feedback.json"))
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)}
    from index.search.search import Searcher
    from index.store import Store
    from index.search.usertags import Definition, score_label
    out = {"machine": bench_machine(note="precision does not depend on the load; the times do"),
           "command": "python bench/feedback.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": "bike-tiny (random init): text is meaningless", "kinds": KINDS, "per_kind": args.per_kind,
           "trials": args.trials, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="bike-bench-feedback-") as tmp:
        tic = time.perf_counter()
        names = make_corpus(Path(tmp) / "videos", args.per_kind, args.seed)
        log(f"corpus: {len(names)} videos in {time.perf_counter() - tic:.0f} s")
        tic = time.perf_counter()
        store_dir = Path(tmp) / "store"
        r = subprocess.run([sys.executable, "-m", "jobs.cli", "tag", str(Path(tmp) / "videos"), "--store",
                            str(store_dir), "--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51",
                            "--labels", "dog,cat,surfing,cooking", "--window", "0", "--no-progress"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(r.stderr[-3000:])
        out["tag_s"] = round(time.perf_counter() - tic, 1)
        log(f"tagged in {out['tag_s']} s")
        store = Store(store_dir)
        s = Searcher(store)
        videos = store.read("videos", ["video_id", "path"], model_id=s.model_id).to_pylist()
        kind_of_video = {v["video_id"]: names[Path(v["path"]).name] for v in videos}
        clips = store.read("clips", ["clip_id", "video_id"], model_id=s.model_id).to_pylist()
        kind_of = {c["clip_id"]: kind_of_video[c["video_id"]] for c in clips}
        by_kind = {k: sorted(c for c, kk in kind_of.items() if kk == k) for k in KINDS}
        rng = np.random.default_rng(args.seed + 1)
        rows, seconds = [], []
        for kind, text in KINDS.items():
            res = s.search(text, k=len(kind_of))
            row = {"kind": kind, "clips": len(by_kind[kind]),
                   "text_alone": precision_at([x.clip_id for x in res], kind_of, kind)}
            for label, n, query in (("positives_3", 3, None), ("positives_10", 10, None),
                                    ("positives_3_and_query", 3, text)):
                ps = []
                for _ in range(args.trials):
                    pos = list(rng.choice(by_kind[kind], size=min(n, len(by_kind[kind]) - 1), replace=False))
                    t = time.perf_counter()
                    ids, _, score, *_ = score_label(s, Definition(kind, s.model_id, pos, [], query))
                    seconds.append(time.perf_counter() - t)
                    order = [ids[i] for i in np.argsort(-score, kind="stable")]
                    ps.append(precision_at(order, kind_of, kind, exclude=pos))
                row[label] = round(float(np.mean(ps)), 3)
            rows.append(row)
            log(f"{kind:>9}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("kind", "clips")))
    out["per_kind"] = rows
    out["mean"] = {k: round(float(np.mean([r[k] for r in rows])), 3)
                   for k in ("text_alone", "positives_3", "positives_10", "positives_3_and_query")}
    out["chance"] = round(1 / len(KINDS), 3)
    out["label_score_s_mean"] = round(float(np.mean(seconds)), 4)
    out["clips"] = len(kind_of)
    out["target"] = {"positives_3": 0.8}
    print(f"precision@10 over {len(kind_of)} clips of {len(KINDS)} kinds (chance {out['chance']}), random weights:")
    for k, v in out["mean"].items():
        print(f"  {k:<24} {v}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
