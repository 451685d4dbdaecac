"""Benchmark of the video decoders: what each backend costs per frame the model keeps.

    .venv/bin/python bench/decode.py                    # writes bench/results/decode.json
    .venv/bin/python bench/decode.py --seconds 20 --sizes 480 720    # a quicker run

1. Generates a corpus with realistic GOPs (x264, superfast, 25 fps): GOP 1 s (25 frames), 2 s (50) and
   x264's default 250; 480p, 720p, 1080p; with 3 B-frames and without. lavfi ``testsrc2`` content.
2. For every decoder mode (ffmpeg-select = today's path, pyav exact, pyav keyframes, ffmpeg keyframes), in
   one fresh subprocess per mode (after a warm-up on a tiny clip), runs ``engine.video.iter_clips`` on every
   video as ``bike tag`` does (10 s windows, 8 frames, resize 256, crop 224; one decoder thread) and reads:
   CPU seconds (the process and its children, ``getrusage``; probe and frame index included), wall time,
   frames kept, frames the decoder decoded, and peak RSS (the mode's process, a high-water mark over its
   videos; ffmpeg's own peak separately).
3. Prints per GOP group: CPU-seconds per kept frame, kept frames/s per core (= 1 / that), decoded frames per
   kept frame, peak memory, and the ratio to ffmpeg-select measured in the same run.

The machine is shared with other jobs: CPU seconds (not wall time) are the measure, and ratios within one
run are what to quote. ``load_avg`` at start and end are recorded in the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from machine import machine as bench_machine  # bench/ is sys.path[0] when a bench script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = {                         # name -> (decoder, sampling)
    "ffmpeg-select": ("ffmpeg", "exact"),
    "pyav-exact": ("pyav", "exact"),
    "pyav-keyframes": ("pyav", "keyframes"),
    "ffmpeg-keyframes": ("ffmpeg", "keyframes"),
}
HEIGHTS = {480: (854, 480), 720: (1280, 720), 1080: (1920, 1080)}
GOPS = {"1s": 25, "2s": 50, "250": 250}


def make_corpus(folder: Path, seconds: int, heights, bframes=(0, 3)) -> list:
    from engine.video import ffmpeg_exe
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for h in heights:
        w, h = HEIGHTS[h]
        for gop_name, gop in GOPS.items():
            for bf in bframes:
                path = folder / f"{h}p_gop{gop_name}_bf{bf}_{seconds}s.mp4"
                if not path.exists():
                    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                                    f"testsrc2=size={w}x{h}:rate=25:duration={seconds}", "-c:v", "libx264",
                                    "-preset", "superfast", "-bf", str(bf), "-g", str(gop),
                                    "-keyint_min", str(min(gop, 25)), "-sc_threshold", "0",
                                    "-pix_fmt", "yuv420p", "-threads", "2", str(path)], check=True)
                out.append({"path": str(path), "height": h, "gop": gop_name, "bframes": bf})
    return out


def measure_one(path: str, decoder: str, sampling: str) -> dict:
    """Run in a fresh process: decode like ``bike tag`` and report costs."""
    from engine.video import base, clips
    reports = []
    real_report = base.DecodeReport

    class Counting(real_report):
        def __init__(self):
            super().__init__()
            reports.append(self)
    clips.DecodeReport = Counting
    r0, c0, t0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN), \
        time.perf_counter()
    kept = 0
    for clip in clips.iter_clips(path, frames=8, window_s=10, size=224, resize=256, threads=1,
                                 decoder=decoder, sampling=sampling):
        kept += clip.frames.shape[1]
    wall = time.perf_counter() - t0
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) + \
          (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
    return {"kept": kept, "decoded": sum(r.decoded for r in reports), "cpu_s": cpu, "wall_s": wall,
            "peak_rss_mib": r1.ru_maxrss / 1024, "peak_child_rss_mib": c1.ru_maxrss / 1024}


def measure_many(paths: list, decoder: str, sampling: str) -> list:
    """In one fresh process per mode: a warm-up (imports, first open) on a tiny clip, then every video."""
    import tempfile
    from engine.video import ffmpeg_exe, iter_clips
    with tempfile.TemporaryDirectory() as tmp:
        warm = os.path.join(tmp, "warm.mp4")
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                        "testsrc2=size=64x48:rate=25:duration=1", warm], check=True)
        list(iter_clips(warm, frames=8, window_s=10, decoder=decoder, sampling=sampling))
    return [measure_one(p, decoder, sampling) for p in paths]


def run_mode(paths: list, mode: str) -> list:
    decoder, sampling = MODES[mode]
    code = ("import json,sys; sys.path[:0] = [%r, %r]; from bench.decode import measure_many; "
            "print(json.dumps(measure_many(%r, %r, %r)))" % (str(ROOT / "bench"), str(ROOT), paths, decoder,
                                                              sampling))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import av
    return bench_machine(pyav=av.__version__, pyav_ffmpeg=".".join(map(str, av.library_versions["libavcodec"])),
                         note="compare ratios within this run; the load average at the start (and end) says whether other work shared the machine")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="length of each corpus video (default 60)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[480, 720, 1080], choices=sorted(HEIGHTS))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--corpus", default="/tmp/bike-bench-decode", help="where the corpus is generated")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "decode.json"))
    args = ap.parse_args()

    info = machine()
    t = time.perf_counter()
    corpus = make_corpus(Path(args.corpus), args.seconds, args.sizes)
    gen_s = time.perf_counter() - t
    rows = []
    for mode in args.modes:
        for v, r in zip(corpus, run_mode([v["path"] for v in corpus], mode)):
            rows.append({**v, "mode": mode, **r})
            print(f"{Path(v['path']).name:<28} {mode:<17} kept {r['kept']:>4}  decoded {r['decoded']:>5}  "
                  f"cpu {r['cpu_s']:6.2f} s  wall {r['wall_s']:6.2f} s", flush=True)

    # summary per GOP group (all sizes and B-frame settings together) and mode
    summary = []
    print(f"\n{'GOP':<5} {'mode':<17} {'CPU-ms/kept':>11} {'kept/s/core':>11} {'decoded/kept':>12} "
          f"{'peak MiB':>9} {'vs ffmpeg-select':>16}")
    for gop in GOPS:
        base_cpu = None
        for mode in args.modes:
            sel = [r for r in rows if r["gop"] == gop and r["mode"] == mode]
            if not sel:
                continue
            kept = sum(r["kept"] for r in sel)
            cpu = sum(r["cpu_s"] for r in sel)
            dec = sum(r["decoded"] for r in sel)
            peak = max(max(r["peak_rss_mib"], r["peak_child_rss_mib"]) for r in sel)
            per = cpu / kept
            if mode == "ffmpeg-select":
                base_cpu = per
            ratio = base_cpu / per if base_cpu else float("nan")
            summary.append({"gop": gop, "mode": mode, "cpu_s_per_kept": per, "kept_per_s_per_core": 1 / per,
                            "decoded_per_kept": dec / kept, "peak_rss_mib": peak,
                            "speedup_vs_ffmpeg_select": ratio})
            print(f"{gop:<5} {mode:<17} {1000 * per:>11.2f} {1 / per:>11.1f} {dec / kept:>12.2f} {peak:>9.0f} "
                  f"{ratio:>15.2f}x")
    info["load_avg_at_end"] = list(os.getloadavg())
    result = {"machine": info, "corpus": {"seconds": args.seconds, "sizes": args.sizes, "fps": 25,
                                          "gops": GOPS, "bframes": [0, 3], "encoder": "x264 superfast",
                                          "generation_s": gen_s},
              "settings": {"window_s": 10, "frames": 8, "resize": 256, "crop": 224, "threads": 1},
              "summary": summary, "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
