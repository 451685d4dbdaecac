"""Benchmark of ``bike tag``: decoding alone, the model alone, the whole pipeline, and memory.

    .venv/bin/python bench/tag.py                      # defaults below; writes bench/results/tag.json
    .venv/bin/python bench/tag.py --sizes 8 16 --long-s 600 --model bike-tiny    # a quick run
    .venv/bin/python bench/tag.py --precisions fp32 auto --long-s 0   # before/after reduced precision, one run

1. Generates a corpus (lavfi ``testsrc2``, H.264 ultrafast, 25 fps, 5–30 s, 320×240 … 1280×720, seeded) and
   one long 1080p video (1 fps so it is cheap to make; default 1 hour).
2. Decode alone: ``jobs.tag.decode.decode_video`` over the corpus in as many processes as cores → sampled
   frames/s (what the model receives).
3. Model alone: ``Scorer.score`` on random pre-decoded frames, batches of ``--model-batch`` clips, torch
   threads = cores → frames/s, at every precision of ``--precisions`` (engine/model/precision.py).
4. Pipeline: ``bike tag`` (in a subprocess, its own local Ray) on the first N videos for each N of
   ``--sizes`` → videos/s, frames/s after start-up and end to end, peak memory (PSS summed over the job's
   whole process tree: driver, Ray daemons, workers, ffmpeg), sampled every 0.2 s.
   Steps 3–4 run once per precision of ``--precisions`` (default: fp32 and auto), so before/after ratios
   come from one run on one machine state.
5. Memory of tagging the long video alone (``--long-window`` s windows; ``--long-s 0`` skips it).

The model is a random-init open_clip (no weights can be downloaded here): speed and memory are those of
the real architecture; the labels are meaningless. Prints a table, writes ``bench/results/tag.json`` with
the machine (CPU model, cores, memory, GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path
from machine import machine as bench_machine  # bench/ is sys.path[0] when a bench script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = [(320, 240), (640, 360), (854, 480), (1280, 720)]


# ---- corpus ------------------------------------------------------------------------------------------
def _ffmpeg(*args):
    from engine.video import ffmpeg_exe
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True)


def make_corpus(folder: Path, n: int, seed: int = 0) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        w, h = rng.choice(SIZES)
        secs = rng.randint(5, 30)
        path = folder / f"c{i:03d}_{w}x{h}_{secs}s.mp4"
        if not path.exists():
            _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=25:duration={secs}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1",
                    "-metadata", f"comment=bench clip {i}", path)          # unique bytes: no two alike
        out.append(path)
    return out


def make_long(path: Path, seconds: int) -> Path:
    if not path.exists():
        _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=1:duration={seconds}", "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60", path)
    return path


# ---- stages alone ------------------------------------------------------------------------------------
def _decode_one(args):
    from jobs.tag.decode import decode_video
    path, frames, window, size, resize = args
    n = 0
    for m in decode_video(str(path), frames=frames, window_s=window, size=size, resize=resize):
        if not isinstance(m, dict):
            n += m.shape[0] * m.shape[1]
    return n


def bench_decode(paths, cores: int, frames=8, window=10.0, size=224, resize=256) -> dict:
    t = time.perf_counter()
    with Pool(cores) as pool:
        n = sum(pool.map(_decode_one, [(p, frames, window, size, resize) for p in paths], chunksize=1))
    dt = time.perf_counter() - t
    return {"videos": len(paths), "frames": n, "seconds": dt, "frames_per_s": n / dt}


def bench_model(model: str, cores: int, batch: int, calls: int = 2, precision: str = "fp32") -> dict:
    import numpy as np
    import torch

    from jobs.tag.records import ClipSpan
    from jobs.tag.scoring import Scorer
    torch.set_num_threads(cores)
    s = Scorer(dict(name=model, random_init=True, precision=precision), "kinetics400", threads=cores)
    s.facts()                                                     # raises what loading met
    T = s.model.frames
    x = np.random.default_rng(0).integers(0, 255, (batch, T, s.model.crop, s.model.crop, 3), dtype=np.uint8)
    spans = [[ClipSpan(i, 0, 10, list(range(T))) for i in range(batch)]]
    s.score([spans[0][:2]], x[:2])                                # warm-up
    t = time.perf_counter()
    for _ in range(calls):
        s.score(spans, x)
    dt = time.perf_counter() - t
    return {"model": model, "precision": s.model.precision.name, "batch_clips": batch,
            "frames": calls * batch * T, "seconds": dt, "frames_per_s": calls * batch * T / dt}


# ---- the pipeline, in a subprocess, with its memory ----------------------------------------------------
def _tree_pss(pid: int) -> int:
    import psutil
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_tag(sources, store: Path, model: str, window: float, extra=(), precision: str = "fp32") -> dict:
    """Run `bike tag` in a child process (its own Ray), sampling the PSS of its process tree."""
    spec = {"sources": [str(s) for s in sources], "store": str(store), "model": model, "window": window,
            "extra": list(extra), "precision": precision}
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_pss(proc.pid))
            time.sleep(0.2)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"bike tag failed ({proc.returncode}):\n{out}")
    res = json.loads(out.strip().splitlines()[-1])
    res.update(wall_s=wall, peak_pss_bytes=peak[0], load_avg_after=os.getloadavg())
    return res


def _child(spec_json: str) -> None:
    from jobs.tag.tag import TagOptions, run_tag as tag
    spec = json.loads(spec_json)
    extra = dict(zip(spec["extra"][::2], spec["extra"][1::2]))
    s = tag(TagOptions(sources=spec["sources"], store=spec["store"], labels="kinetics400",
                       model_kwargs=dict(name=spec["model"], random_init=True, precision=spec["precision"]),
                       window_s=spec["window"],
                       index=False, progress=False, **{k: int(v) for k, v in extra.items()}),
            log=lambda m: None)
    import torch

    from engine.model.precision import resolve
    precision = resolve(spec["precision"], "cuda" if torch.cuda.is_available() else "cpu")
    print(json.dumps({"precision": precision, "model": s.model, "ok": s.ok, "error": s.error,
                      "frames": s.frames, "seconds": s.seconds, "run_s": s.run_s,
                      "videos_per_s": (s.ok + s.error) / s.run_s, "frames_per_s": s.frames / s.run_s,
                      "end_to_end_frames_per_s": s.frames / s.seconds, "model_busy": s.model_busy}))


# ---- report ------------------------------------------------------------------------------------------
def machine() -> dict:
    return bench_machine()


def shared_core_bound(decode_fps: float, model_fps: float) -> float:
    """Frames/s a pipeline can reach when decoding and the model share the same cores and each stage alone
    used all of them: every frame costs 1/decode + 1/model seconds of the whole machine. On a GPU host (the
    model on the GPU) the bound is min(decode, model) instead."""
    return 1.0 / (1.0 / decode_fps + 1.0 / model_fps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model, random init (default ViT-B-32)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[12, 24], help="corpus sizes for the pipeline")
    ap.add_argument("--long-s", type=int, default=3600, help="length of the long 1080p video (s)")
    ap.add_argument("--long-window", type=float, default=60.0, help="window for the long video (s)")
    ap.add_argument("--model-batch", type=int, default=32)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "auto"],
                    help="precisions to compare in this run (default fp32 auto)")
    ap.add_argument("--work", default=None, help="folder for the generated media (kept between runs)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tag.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args.child)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cores = os.cpu_count() or 1
    at_start = machine()
    work = Path(args.work or Path(tempfile.gettempdir()) / "bike-bench-tag")
    t = time.perf_counter()
    paths = make_corpus(work / "corpus", max(args.sizes))
    gen_corpus = time.perf_counter() - t
    t = time.perf_counter()
    long_video = make_long(work / f"long_{args.long_s}s_1080p.mp4", args.long_s) if args.long_s else None
    gen_long = time.perf_counter() - t
    print(f"corpus: {len(paths)} videos ({gen_corpus:.0f} s to make), long video {args.long_s} s 1080p "
          f"({gen_long:.0f} s to make)", file=sys.stderr)

    decode = bench_decode(paths[: max(args.sizes)], cores)
    print(f"decode alone: {decode['frames_per_s']:.1f} frames/s", file=sys.stderr)
    models = []
    for prec in args.precisions:
        models.append(bench_model(args.model, cores, args.model_batch, precision=prec))
        print(f"model alone ({models[-1]['precision']}): {models[-1]['frames_per_s']:.1f} frames/s", file=sys.stderr)
    pipeline = []
    for prec in args.precisions:
        for n in args.sizes:
            folder = work / f"corpus_{n}"
            folder.mkdir(exist_ok=True)
            for p in paths[:n]:
                link = folder / p.name
                if not link.exists():
                    link.symlink_to(p)
            with tempfile.TemporaryDirectory(prefix="bike-bench-store-") as store:
                r = run_tag([folder], Path(store) / "s", args.model, 10.0, ["model_batch", args.model_batch],
                            precision=prec)
            r["videos"] = n
            pipeline.append(r)
            print(f"pipeline {n} videos ({r['model']}): {r['frames_per_s']:.1f} frames/s, "
                  f"peak {r['peak_pss_bytes'] / 2**30:.2f} GiB", file=sys.stderr)
    long = None
    if args.long_s:
        with tempfile.TemporaryDirectory(prefix="bike-bench-store-") as store:
            long = run_tag([long_video], Path(store) / "s", args.model, args.long_window,
                           precision=args.precisions[-1])
        long.update(seconds_of_video=args.long_s, window_s=args.long_window, resolution="1920x1080", fps=1)
    model = models[0]

    by_prec = {m["precision"]: m for m in models}
    slower = {p["precision"]: min(decode["frames_per_s"], by_prec.get(p["precision"], model)["frames_per_s"])
              for p in pipeline}
    shared = {p["precision"]: shared_core_bound(decode["frames_per_s"],
                                                by_prec.get(p["precision"], model)["frames_per_s"])
              for p in pipeline}
    at_start["loadavg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {"machine": at_start, "model": f"{args.model} (random init)", "corpus": {
        "videos": len(paths), "seconds": "5-30", "sizes": [f"{w}x{h}" for w, h in SIZES], "fps": 25,
        "codec": "h264 ultrafast", "generation_s": gen_corpus}, "decode_alone": decode, "model_alone": model,
        "model_alone_by_precision": models, "pipeline": pipeline, "long_video": long,
        "pipeline_vs_slower_stage": [p["frames_per_s"] / slower[p["precision"]] for p in pipeline],
        "pipeline_vs_shared_core_bound": [p["frames_per_s"] / shared[p["precision"]] for p in pipeline],
        "command": " ".join([".venv/bin/python", "bench/tag.py", *sys.argv[1:]])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    gib = 2 ** 30
    rows = [("decode alone", f"{decode['videos']} videos", f"{decode['frames_per_s']:.1f}", "", "", "", "")]
    rows += [(f"model alone ({args.model}, {m['precision']})", f"batch {args.model_batch}",
              f"{m['frames_per_s']:.1f}", "", "", "", "") for m in models]
    runs = [(f"bike tag, {p['videos']} videos, {p['precision']}", f"{p['videos_per_s']:.2f} videos/s", p)
            for p in pipeline]
    if long:
        runs.append((f"bike tag, 1 video {args.long_s} s 1080p", f"window {args.long_window:g} s", long))
    for name, work_, p in runs:
        rows.append((name, work_, f"{p['frames_per_s']:.1f} ({p['end_to_end_frames_per_s']:.1f} e2e)",
                     f"{p['peak_pss_bytes'] / gib:.2f}",
                     f"{p['frames_per_s'] / slower.get(p['precision'], min(slower.values())):.0%}",
                     f"{p['frames_per_s'] / shared.get(p['precision'], min(shared.values())):.0%}",
                     f"{p.get('model_busy', 0):.0%}"))
    head = ("stage", "work", "frames/s", "peak GiB", "of slower", "of shared", "model busy")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    m = result["machine"]
    print(f"\nbike tag benchmark — {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU {m['gpu']}; "
          f"model {result['model']}")
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print(f"(frames/s = sampled frames the model scores, after start-up; e2e = including Ray start and model "
          f"load; 'of slower' = pipeline / min(decode, model) alone; 'of shared' = pipeline / the bound when both "
          f"stages share the cores, 1/(1/decode + 1/model); 'model busy' = share of the run the model actor was "
          f"scoring; load average at start {m['loadavg_1_5_15'][0]:.1f}, at end "
          f"{m['loadavg_1_5_15_at_end'][0]:.1f}; written to {args.out})")


if __name__ == "__main__":
    main()
