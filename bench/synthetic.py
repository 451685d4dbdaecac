"""Synthetic action videos for tests and benchmarks: coloured shapes that move, resize or blink.

Each video is a real H.264 file (raw RGB frames piped into the engine's ffmpeg) of one shape on a background
colour ramp. Shape kind, colour, background, size and path are random per video; only the *action*
(the class) is shared by a class's videos, so a model must look at how the frames change:

========================== ==========================================================================
class                      what happens
========================== ==========================================================================
moving left / right        the shape slides horizontally; a "right" video is a "left" video played
                           backwards (same start/end distribution), so the SET of frames is the same
                           and only their ORDER tells the classes apart
moving up / down           the same, vertically
growing / shrinking        the radius grows or shrinks (again time reverses of each other)
blinking                   a still shape that is visible only in segments 3–4 of 8 (0-based), i.e.
                           frames ``[3n/8, 5n/8)``; the other frames show the empty background
empty scene                the background only, nothing happens
moving diagonally up right /
moving diagonally down left the shape slides along a diagonal (for few-shot adaptation)
changing colour            a still shape whose colour turns into another one
bouncing                   slides right, then back left
========================== ==========================================================================

    >>> from bench.synthetic import make_dataset
    >>> train = make_dataset("data/train", ["moving left", "moving right"], per_class=20, seed=0)
    >>> train[0]      # ("data/train/moving_left_0000.mp4", "moving left")
"""
from __future__ import annotations

import argparse
import os
import subprocess
from dataclasses import dataclass

import numpy as np

#: Classes whose order in time is the whole difference (mean pooling of frames cannot separate the pairs).
ORDER_CLASSES = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")
#: The class that is visible only in some frames (for the saliency check).
BLINK_CLASS = "blinking"
#: Segments (of 8, 0-based) in which the blinking shape is visible.
BLINK_SEGMENTS = (3, 4)
#: The scene without any shape (so that empty frames alone do not identify "blinking").
EMPTY_CLASS = "empty scene"
#: Classes for few-shot adaptation (not used for base training).
NEW_CLASSES = ("moving diagonally up right", "moving diagonally down left", "changing colour", "bouncing")
BASE_CLASSES = ORDER_CLASSES + (BLINK_CLASS, EMPTY_CLASS)
ALL_CLASSES = BASE_CLASSES + NEW_CLASSES

SHAPES = ("circle", "square", "triangle", "diamond")


@dataclass(frozen=True)
class VideoSpec:
    size: int = 64            # width = height, pixels (even)
    fps: int = 8
    seconds: float = 2.0

    @property
    def frames(self) -> int:
        return max(1, round(self.fps * self.seconds))


def _mask(kind: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean (size, size) mask of a shape centred at (cx, cy) with half-size r."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = x - cx, y - cy
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if kind == "triangle":                         # apex up
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    raise ValueError(f"unknown shape {kind!r}")


def _scene(size: int, rng) -> np.ndarray:
    """The background: a fixed colour ramp (red grows to the right, green downwards) at a random brightness,
    so where a shape stands changes which colours it hides."""
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    img = np.empty((size, size, 3), np.float32)
    img[..., 0] = 20 + 110 * ramp[None, :]
    img[..., 1] = 20 + 110 * ramp[:, None]
    img[..., 2] = 50
    return np.clip(img * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)


def _bright(rng) -> np.ndarray:
    c = rng.integers(0, 256, 3)
    c[rng.integers(0, 3)] = rng.integers(200, 256)     # at least one strong channel: visible on dark
    return c.astype(np.uint8)


def _lerp(a, b, n):
    return np.linspace(a, b, n) if n > 1 else np.array([a], dtype=float)


def render(action: str, spec: VideoSpec, rng: np.random.Generator) -> np.ndarray:
    """The frames (N, size, size, 3) uint8 of one video of class ``action``."""
    n, s = spec.frames, spec.size
    bg = _scene(s, rng)                                        # (s, s, 3) the same kind of scene everywhere
    color = _bright(rng)
    kind = SHAPES[rng.integers(len(SHAPES))]
    r = float(rng.uniform(0.15, 0.2) * s)
    lo, hi = r + 1, s - r - 1                                  # centre range keeping the shape inside
    fixed = rng.uniform(lo, hi, 2)                             # (x, y) for still or one-axis motion
    a, b = sorted(rng.uniform(lo, hi, 2))
    if b - a < 0.4 * s:                                        # a clear, visible displacement
        mid = min(max((a + b) / 2, lo + 0.2 * s), hi - 0.2 * s)
        a, b = mid - 0.2 * s, mid + 0.2 * s
    xs = np.full(n, fixed[0])
    ys = np.full(n, fixed[1])
    radius = np.full(n, r)
    colors = np.repeat(color[None], n, 0)
    visible = np.ones(n, bool)
    if action == "moving right":
        xs = _lerp(a, b, n)
    elif action == "moving left":
        xs = _lerp(b, a, n)
    elif action == "moving down":
        ys = _lerp(a, b, n)
    elif action == "moving up":
        ys = _lerp(b, a, n)
    elif action in ("growing", "shrinking"):
        small, big = sorted(rng.uniform(0.05, 0.22, 2) * s)
        if big - small < 0.1 * s:
            small, big = 0.05 * s, 0.2 * s
        radius = _lerp(small, big, n) if action == "growing" else _lerp(big, small, n)
        xs[:] = ys[:] = s / 2 + rng.uniform(-0.1, 0.1) * s
    elif action == EMPTY_CLASS:
        visible[:] = False
    elif action == BLINK_CLASS:
        frame = np.arange(n)
        lo_f, hi_f = BLINK_SEGMENTS[0] * n // 8, (BLINK_SEGMENTS[-1] + 1) * n // 8
        visible = (frame >= lo_f) & (frame < hi_f)
    elif action == "moving diagonally up right":
        xs, ys = _lerp(a, b, n), _lerp(b, a, n)
    elif action == "moving diagonally down left":
        xs, ys = _lerp(b, a, n), _lerp(a, b, n)
    elif action == "changing colour":
        other = _bright(rng)
        while np.abs(other.astype(int) - color.astype(int)).sum() < 200:
            other = _bright(rng)
        w = _lerp(0.0, 1.0, n)[:, None]
        colors = np.round((1 - w) * color + w * other).astype(np.uint8)
    elif action == "bouncing":
        half = n // 2
        xs = np.concatenate([_lerp(a, b, half), _lerp(b, a, n - half)])
    else:
        raise ValueError(f"unknown synthetic class {action!r} (known: {', '.join(ALL_CLASSES)})")
    out = np.empty((n, s, s, 3), np.uint8)
    out[:] = bg
    for t in range(n):
        if visible[t]:
            out[t][_mask(kind, s, xs[t], ys[t], radius[t])] = colors[t]
    return out


def write_video(path: str, frames: np.ndarray, fps: int) -> str:
    """Encode uint8 (N, H, W, 3) frames as an H.264 mp4 (yuv420p, every frame a keyframe-friendly GOP)."""
    from engine.video import ffmpeg_exe
    n, h, w, _ = frames.shape
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-g", "8", "-pix_fmt", "yuv420p",
           "-frames:v", str(n), path]
    res = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {res.stderr.decode(errors='replace')[-500:]}")
    return path


def make_dataset(out_dir: str, classes, per_class: int, seed: int = 0,
                 spec: VideoSpec = VideoSpec()) -> list:
    """Write ``per_class`` videos of each class into ``out_dir`` → ``[(path, class name)]``.

    Deterministic given ``seed``; files that already exist with the same name are rewritten.
    """
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for name in classes:
        for i in range(per_class):
            path = os.path.join(out_dir, f"{name.replace(' ', '_')}_{i:04d}.mp4")
            write_video(path, render(name, spec, rng), spec.fps)
            entries.append((path, name))
    return entries


def write_list(path: str, entries, labels) -> str:
    """A ``path label_id`` list file (the BIKE format) for ``entries`` [(video path, class name)]."""
    index = {n: i for i, n in enumerate(labels)}
    with open(path, "w") as f:
        for video, name in entries:
            f.write(f"{os.path.abspath(video)} {index[name]}\n")
    return path


def write_labels(path: str, labels) -> str:
    """An ``id,name`` label CSV."""
    with open(path, "w") as f:
        f.write("id,name\n")
        for i, n in enumerate(labels):
            f.write(f"{i},{n}\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="write synthetic action videos + list + label CSV")
    p.add_argument("out")
    p.add_argument("--classes", default=",".join(BASE_CLASSES))
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args(argv)
    classes = [c.strip() for c in a.classes.split(",")]
    entries = make_dataset(a.out, classes, a.per_class, a.seed, VideoSpec(a.size, a.fps, a.seconds))
    write_labels(os.path.join(a.out, "labels.csv"), classes)
    write_list(os.path.join(a.out, "list.txt"), entries, classes)
    print(f"wrote {len(entries)} videos, {a.out}/list.txt and {a.out}/labels.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
