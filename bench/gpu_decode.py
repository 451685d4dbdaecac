"""GPU-host measurement for the decoder issue: NVDEC vs the CPU backends vs the model's appetite, one script.

    python3 bench/gpu_decode.py                    # on a host with an NVIDIA GPU
    python3 bench/gpu_decode.py --seconds 20       # shorter corpus
    python3 bench/gpu_decode.py --cpu-only --seconds 4 --workers 1 2    # logic check on a CPU host

NOT RUN YET on a GPU: written on a CPU-only machine (``--cpu-only`` ran there), to be run once where a GPU is
lent. Writes ``$OUT/gpu_decode.json`` when ``$OUT`` is set (the lent machines' output folder), else
``bench/results/gpu_decode.json``, and prints a table. In one run:

0. setup: packages it cannot import (``av``, ``open_clip``, ``ftfy``, ``ray``, ``duckdb``) are installed from
   the wheels in ``--wheels`` (default ``.whl/``; a file too big to carry may travel in pieces
   ``NAME.whl.part0``, ``.part1``, ... which are joined) into ``/tmp/bike-site``; what is still missing skips
   the parts that need it, with the reason. The test videos are encoded with PyAV's own libx264 (no ffmpeg
   binary needed): lavfi ``testsrc2``, 25 fps, x264 default GOP, 1080p and 720p H.264;
1. NVDEC frames/s: full sequential decode through PyAV's CUDA hwaccel (no software fallback), frames copied to
   host memory as the nvdec backend does, with 1, 4 and 7 decoding processes at once (an H100/H200 has 7
   NVDEC engines); and the same with the frames left on the GPU (``HWAccel(is_hw_owned=True)``): the ceiling
   of a decode without the host round trip;
2. NVDEC in ``bike tag``'s sampling (``engine.video.iter_clips``, 10 s windows × 8 frames, exact, decoder
   ``nvdec:k`` = NVDEC slot k): kept frames/s with 1, 4 and 7 processes;
3. the CPU backends on the host's cores: full decode with one single-threaded process per core, and the pyav
   backend's ``bike tag`` sampling, one process per core, in kept frames/s;
4. the bare encoder bound: a random-init open_clip ViT-B-32 image tower in fp16, batch 512, frames/s;
5. ``bike tag`` on one GPU, ViT-B-32 random init (``--precision auto`` = fp16 on CUDA), with ``--decoder
   auto`` (CPU slots + one NVDEC slot per engine: the ``NVDEC`` Ray resource the local Ray declares),
   ``--decoder nvdec`` (NVDEC slots only) and ``--decoder pyav`` (CPU slots only): frames/s, and the
   ``decoders:`` / ``decodes:`` lines that say which slots ran which backend. Needs ``ray`` and ``duckdb``
   (Ray's wheel is ~79 MB: more than one carry of a lent machine, so send it in pieces).

Each part is skipped with a reason when its prerequisite is missing (no GPU, no open_clip, no Ray, ...), so a
partial host still gives a partial JSON. docs/decoding.md says what the figures are for.
"""
from __future__ import annotations

import argparse
import glob
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
SITE = "/tmp/bike-site"
NEEDED = {"av": "av", "open_clip": "open_clip_torch", "ftfy": "ftfy", "ray": "ray", "duckdb": "duckdb"}


# ---- 0. setup ----------------------------------------------------------------------------------------------
def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def ensure_packages(wheels: Path) -> dict:
    """Install the missing packages from ``wheels`` into SITE; put SITE on the paths. -> what happened."""
    missing = [m for m in NEEDED if not _importable(m)]
    done: dict = {"missing_before": missing}
    if missing and wheels.is_dir():
        for first in sorted(wheels.glob("*.whl.part0")):          # join wheels carried in pieces
            whole = first.with_name(first.name[: -len(".part0")])
            if not whole.exists():
                parts = sorted(wheels.glob(whole.name + ".part*"), key=lambda p: int(p.suffix[5:]))
                with open(whole, "wb") as out:
                    for p in parts:
                        out.write(p.read_bytes())
        files = [str(p) for p in sorted(wheels.glob("*.whl"))]
        if files:
            res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                  "--no-compile", "--no-cache-dir", "--upgrade", "--target", SITE, *files],
                                 capture_output=True, text=True)
            done["pip"] = {"rc": res.returncode, "tail": (res.stdout + res.stderr)[-1500:]}
    if os.path.isdir(SITE):
        sys.path.insert(0, SITE)
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), SITE, os.environ.get("PYTHONPATH", "")])
        import importlib
        importlib.invalidate_caches()
    done["missing_after"] = [m for m in NEEDED if not _importable(m)]
    return done


def make(folder: Path, w: int, h: int, seconds: int) -> str:
    """An H.264 test video encoded with PyAV's libx264 from lavfi ``testsrc2`` (x264's default GOP, B-frames)."""
    import av
    path = folder / f"{h}p_{seconds}s.mp4"
    if path.exists():
        return str(path)
    tmp = path.with_suffix(".part.mp4")
    with av.open(f"testsrc2=size={w}x{h}:rate=25:duration={seconds}", format="lavfi") as src, \
            av.open(str(tmp), "w") as dst:
        out = dst.add_stream("libx264", rate=25, options={"preset": "veryfast"})
        out.width, out.height, out.pix_fmt = w, h, "yuv420p"
        for frame in src.decode(video=0):
            frame.pts = None
            for p in out.encode(frame.reformat(format="yuv420p")):
                dst.mux(p)
        for p in out.encode(None):
            dst.mux(p)
    tmp.rename(path)
    return str(path)


# ---- 1.-3. decoding ----------------------------------------------------------------------------------------
def full_decode(args) -> tuple[int, float]:
    """Decode every frame of ``path`` with PyAV; ``mode``: "cpu" (one thread), "hw" (CUDA, frames to host),
    "hw_owned" (CUDA, frames stay on the GPU); ``gpu``: the CUDA device. -> (frames, seconds)."""
    path, mode, gpu = args
    from engine.video.pyav import open_container, video_stream
    accel = None
    if mode != "cpu":
        from av.codec.hwaccel import HWAccel
        accel = HWAccel(device_type="cuda", device=str(gpu), allow_software_fallback=False,
                        is_hw_owned=mode == "hw_owned")
    t = time.perf_counter()
    n = 0
    with open_container(path, hwaccel=accel) as c:
        s = video_stream(c, path)
        if mode == "cpu":
            s.thread_type = "AUTO"
            s.codec_context.thread_count = 1
        for _ in c.decode(s):
            n += 1
    return n, time.perf_counter() - t


def sampled_decode(args) -> tuple[int, float]:
    """``bike tag``'s sampling of ``path`` with ``decoder`` (e.g. "nvdec:3", "pyav"). -> (kept, seconds)."""
    path, decoder = args
    from engine.video import get_decoder, iter_clips
    dec = get_decoder(decoder)
    t = time.perf_counter()
    kept = sum(c.frames.shape[1] for c in iter_clips(path, frames=8, window_s=10, threads=1, decoder=dec))
    return kept, time.perf_counter() - t


def parallel(fn, jobs: list) -> dict:
    t = time.perf_counter()
    with ProcessPoolExecutor(len(jobs)) as ex:
        res = list(ex.map(fn, jobs))
    wall = time.perf_counter() - t
    frames = sum(r[0] for r in res)
    return {"workers": len(jobs), "frames": frames, "wall_s": round(wall, 3), "frames_per_s": frames / wall}


def gpus() -> int:
    from engine.video.nvdec import visible_gpus
    return max(1, visible_gpus())


# ---- 4.-5. the model ---------------------------------------------------------------------------------------
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


def bike_tag(videos: list, decoder: str) -> dict:
    store = Path(tempfile.mkdtemp(prefix=f"bike-gpu-{decoder}-")) / "store"
    cmd = [sys.executable, "-m", "jobs.cli", "tag", *videos, "--store", str(store), "--model", "ViT-B-32",
           "--random-init", "--decoder", decoder, "--no-progress", "--no-index", "--model-batch", "256"]
    t = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), SITE, os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    text = out.stdout + out.stderr
    m = re.search(r"([\d.]+) frames/s", text)
    line = lambda key: next((ln.split(key, 1)[1].strip() for ln in text.splitlines() if key in ln), None)  # noqa: E731
    return {"decoder": decoder, "rc": out.returncode, "wall_s": round(time.perf_counter() - t, 1),
            "frames_per_s": float(m.group(1)) if m else None, "slots": line("decoders:"),
            "decodes": line("decodes:"), "tail": text[-1500:]}


def _skip(why) -> dict:
    return {"skipped": why if isinstance(why, str) else f"{type(why).__name__}: {why}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="length of each test video (default 60)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 7], help="decoders at once (default 1 4 7)")
    ap.add_argument("--wheels", default=str(ROOT / ".whl"), help="wheels of missing packages (default .whl/)")
    ap.add_argument("--cpu-only", action="store_true", help="skip every GPU part (a logic check on a CPU host)")
    ap.add_argument("--out", default=None, help="the JSON (default $OUT/gpu_decode.json, else bench/results/)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else (Path(os.environ["OUT"]) / "gpu_decode.json" if os.environ.get("OUT")
                                           else ROOT / "bench" / "results" / "gpu_decode.json")
    setup = ensure_packages(Path(args.wheels))
    from engine.video import available
    avail = available()
    # why the GPU parts are skipped (None: they run)
    gpu_ok = "--cpu-only" if args.cpu_only else (None if avail["nvdec"] is None else
                                                 f"nvdec unavailable: {avail['nvdec']}")
    res = {"machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                       "decoders": avail, "setup": setup}, "parts": {}}
    try:
        import av
        res["machine"]["pyav"] = av.__version__
        res["machine"]["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError, ImportError) as e:
        res["machine"]["gpu"] = f"none ({e})"
    if gpu_ok is None:
        from engine.video import nvdec_engines
        res["machine"]["nvdec_engines"] = nvdec_engines.count(nvdec_engines.gpu_names())
    folder = Path(tempfile.gettempdir()) / "bike-gpu-corpus"
    folder.mkdir(exist_ok=True)
    t = time.perf_counter()
    files = {"1080p": make(folder, 1920, 1080, args.seconds), "720p": make(folder, 1280, 720, args.seconds)}
    res["machine"]["corpus_s"] = round(time.perf_counter() - t, 1)
    parts, cores, g = res["parts"], os.cpu_count() or 1, gpus()
    for name, path in files.items():
        for mode in ("hw", "hw_owned"):
            parts[f"nvdec_full_{mode}_{name}"] = _skip(gpu_ok) if gpu_ok else [
                parallel(full_decode, [(path, mode, k % g) for k in range(w)]) for w in args.workers]
        parts[f"nvdec_tag_sampling_{name}"] = _skip(gpu_ok) if gpu_ok else [
            parallel(sampled_decode, [(path, f"nvdec:{k}") for k in range(w)]) for w in args.workers]
        parts[f"cpu_full_{name}"] = parallel(full_decode, [(path, "cpu", 0)] * cores)
        parts[f"cpu_pyav_tag_sampling_{name}"] = parallel(sampled_decode, [(path, "pyav")] * cores)
        print(name, json.dumps({k: v for k, v in parts.items() if k.endswith(name)}, indent=1), flush=True)
    try:
        parts["encoder_bound"] = _skip(gpu_ok) if gpu_ok else encoder_bound()
    except Exception as e:  # noqa: BLE001 - record why
        parts["encoder_bound"] = _skip(e)
    missing = [m for m in ("ray", "duckdb", "open_clip") if m in setup["missing_after"]]
    videos = [files["720p"], files["1080p"], make(folder, 1280, 720, max(2, args.seconds // 2))]
    for decoder in ("auto", "nvdec", "pyav"):
        key = f"bike_tag_{decoder}"
        if missing:
            parts[key] = _skip(f"cannot import {', '.join(missing)}")
        elif gpu_ok and decoder != "pyav":
            parts[key] = _skip(gpu_ok)
        else:
            parts[key] = bike_tag(videos, decoder)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"\n{'part':<34} {'workers':>7} {'frames/s':>10}")
    for key, val in parts.items():
        for row in val if isinstance(val, list) else [val]:
            fps = row.get("frames_per_s")
            print(f"{key:<34} {row.get('workers', ''):>7} "
                  f"{(f'{fps:,.0f}' if fps else row.get('skipped', row.get('rc', ''))):>10}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
