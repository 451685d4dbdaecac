"""GPU-host measurement for the decoder issue: NVDEC vs the CPU backends vs the model's appetite.

    python bench/gpu_decode.py                 # on a host with an NVIDIA GPU; writes bench/results/gpu_decode.json
    python bench/gpu_decode.py --seconds 20    # shorter corpus

NOT RUN YET: written on a CPU-only machine, to be run once where a GPU is lent. It reports, in one run:

1. NVDEC frames/s (full sequential decode through ``engine.video``'s nvdec backend's PyAV CUDA hwaccel,
   frames downloaded to host memory) for 1080p and 720p H.264 with 1, 4 and 7 decoders at once (processes;
   an H100/H200 has 7 NVDEC engines);
2. the CPU backends on the host's cores: full decode frames/s with one process per core, and the pyav
   backend's ``bike tag`` sampling (8 frames per 10 s window) in kept frames/s;
3. the bare encoder bound: a random-init open_clip ViT-B-32 image tower in fp16, batch 512, frames/s;
4. ``bike tag`` frames/s on one GPU with ViT-B-32 (random init) and ``--decoder nvdec`` vs ``--decoder pyav``
   (the fp16 model path belongs to the model-core work; the run records whatever precision ``bike tag`` uses).

Each part is skipped with a reason when its prerequisite is missing (no GPU, no open_clip, ...), so a partial
host still gives a partial JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make(folder: Path, w: int, h: int, seconds: int) -> str:
    from engine.video import ffmpeg_exe
    path = folder / f"{h}p_{seconds}s.mp4"
    if not path.exists():
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={w}x{h}:rate=25:duration={seconds}", "-c:v", "libx264", "-preset",
                        "veryfast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return str(path)


def full_decode(args) -> tuple[int, float]:
    """Decode every frame of ``path`` with PyAV (``hw``: the CUDA hwaccel); (frames, seconds)."""
    path, hw = args
    from engine.video.pyav import open_container, video_stream
    accel = None
    if hw:
        from av.codec.hwaccel import HWAccel
        accel = HWAccel(device_type="cuda", allow_software_fallback=False)
    t = time.perf_counter()
    n = 0
    with open_container(path, hwaccel=accel) as c:
        s = video_stream(c, path)
        if not hw:
            s.thread_type = "AUTO"
            s.codec_context.thread_count = 1
        for _ in c.decode(s):
            n += 1
    return n, time.perf_counter() - t


def parallel(path: str, workers: int, hw: bool) -> dict:
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        res = list(ex.map(full_decode, [(path, hw)] * workers))
    wall = time.perf_counter() - t
    frames = sum(r[0] for r in res)
    return {"workers": workers, "frames": frames, "wall_s": wall, "frames_per_s": frames / wall}


def tag_sampling(path: str) -> dict:
    from engine.video import iter_clips
    t = time.perf_counter()
    kept = sum(c.frames.shape[1] for c in iter_clips(path, frames=8, window_s=10, decoder="pyav", threads=1))
    dt = time.perf_counter() - t
    return {"kept": kept, "seconds": dt, "kept_per_s_one_core": kept / dt}


def encoder_bound(batch: int = 512, steps: int = 20) -> dict:
    import open_clip
    import torch
    model = open_clip.create_model("ViT-B-32", pretrained=None).visual.cuda().half().eval()
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.half)
    with torch.no_grad():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"model": "ViT-B-32 image tower, fp16, random init", "batch": batch, "frames_per_s": batch * steps / dt}


def bike_tag(folder: Path, videos: list, decoder: str) -> dict:
    store = Path(tempfile.mkdtemp(prefix=f"bike-gpu-{decoder}-"))
    cmd = [sys.executable, "-m", "jobs.cli", "tag", *videos, "--store", str(store), "--model", "ViT-B-32",
           "--random-init", "--decoder", decoder, "--no-progress", "--no-index"]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    text = out.stdout + out.stderr
    m = re.search(r"([\d.]+) frames/s", text)
    return {"decoder": decoder, "rc": out.returncode, "wall_s": time.perf_counter() - t,
            "frames_per_s": float(m.group(1)) if m else None, "tail": text[-1500:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 7])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_decode.json"))
    args = ap.parse_args()
    from engine.video import available
    avail = available()
    res = {"machine": {"cores": os.cpu_count(), "platform": platform.platform(), "decoders": avail}, "parts": {}}
    try:
        res["machine"]["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True).stdout.strip()
    except OSError:
        res["machine"]["gpu"] = "none"
    folder = Path(tempfile.gettempdir()) / "bike-gpu-corpus"
    folder.mkdir(exist_ok=True)
    files = {"1080p": make(folder, 1920, 1080, args.seconds), "720p": make(folder, 1280, 720, args.seconds)}
    parts = res["parts"]
    for name, path in files.items():
        if avail["nvdec"] is None:
            parts[f"nvdec_{name}"] = [parallel(path, w, True) for w in args.workers]
        else:
            parts[f"nvdec_{name}"] = {"skipped": avail["nvdec"]}
        parts[f"cpu_full_decode_{name}"] = parallel(path, os.cpu_count() or 1, False)
        parts[f"cpu_pyav_tag_sampling_{name}"] = tag_sampling(path)
        print(name, json.dumps({k: v for k, v in parts.items() if name in k}, indent=1), flush=True)
    try:
        parts["encoder_bound"] = encoder_bound()
    except Exception as e:  # noqa: BLE001 - record why
        parts["encoder_bound"] = {"skipped": f"{type(e).__name__}: {e}"}
    vids = [make(folder, 1280, 720, 30)] + [files["720p"], files["1080p"]]
    parts["bike_tag"] = [bike_tag(folder, vids, d) for d in ("nvdec", "pyav")]
    print(json.dumps(parts, indent=1))
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
