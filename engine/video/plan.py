"""Which frame numbers each time window samples, from the frame index (real timestamps).

Window k of ``engine.video.sampling.windows(duration, window_s)`` holds the frames whose timestamp t has
``start_k <= t < end_k`` (the last window takes everything to the end). View c samples
``first + segment_indices(n, T, offset_c)`` of its n frames. Only windows that hold frames are planned,
and they are produced lazily, so a header that claims hours over a few packets gives a few windows.

``sampling="keyframes"`` (approximate, opt-in): each sample is replaced by the keyframe nearest in time to
the centre of its segment; the decoder then touches keyframes only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .sampling import MIN_LAST_WINDOW_S, segment_indices, view_offsets
from .frameindex import FrameIndex

SAMPLINGS = ("exact", "keyframes")


@dataclass
class Window:
    index: int
    start_s: float
    end_s: float
    numbers: list[list[int]]  # (clips, T) frame numbers to sample


def window_count(duration_s: float, window_s: "float | None") -> int:
    """How many windows ``engine.video.sampling.windows`` cuts (computed, not listed: it may be huge)."""
    if window_s is None or duration_s <= window_s:
        return 1
    k = math.ceil(duration_s / window_s - 1e-12)
    if k > 1 and duration_s - (k - 1) * window_s < MIN_LAST_WINDOW_S:
        k -= 1
    return k


def window_span(k: int, count: int, duration_s: float, window_s: "float | None") -> tuple[float, float]:
    if count == 1 or window_s is None:
        return 0.0, float(duration_s)
    return k * window_s, (float(duration_s) if k == count - 1 else (k + 1) * window_s)


def plan(index: FrameIndex, frames: int, window_s: "float | None", clips: int = 1,
         sampling: str = "exact", spans: "list[tuple[float, float]] | None" = None) -> Iterator[Window]:
    """Lazily yield the windows that hold at least one frame, in time order. ``spans``: the windows as
    given (start_s, end_s), consecutive from 0 (``engine.video.shots.shot_windows``), instead of
    ``window_s``; window k holds the frames with ``start_k <= t < start_{k+1}``."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    n_all = len(index)
    if n_all == 0:
        return
    duration = max(index.duration_s, float(index.times[-1]))
    count = window_count(duration, window_s) if spans is None else len(spans)
    if spans is not None and count > 1:
        starts = np.asarray([a for a, _ in spans], np.float64)
        k = np.clip(np.searchsorted(starts, index.times + 1e-9, side="right") - 1, 0, count - 1)
        ks, firsts = np.unique(k, return_index=True)
        stops = np.append(firsts[1:], n_all)
        groups = zip(firsts.tolist(), stops.tolist(), ks.tolist())
    elif count == 1:
        bounds = [(0, n_all, 0)]
        groups = iter(bounds)
    else:
        k = np.minimum(np.floor((index.times + 1e-9) / window_s).astype(np.int64), count - 1)
        ks, firsts = np.unique(k, return_index=True)
        stops = np.append(firsts[1:], n_all)
        groups = zip(firsts.tolist(), stops.tolist(), ks.tolist())
    for first, stop, k in groups:
        start_s, end_s = window_span(k, count, duration, window_s) if spans is None else spans[k]
        n = stop - first
        if sampling == "exact":
            numbers = [[first + i for i in segment_indices(n, frames, off)]
                       for off in view_offsets(n, frames, clips)]
        else:
            seg = (end_s - start_s) / frames
            numbers = [[index.nearest_keyframe(start_s + (i + (c + 0.5) / clips) * seg, first, stop)
                        for i in range(frames)] for c in range(clips)]
        yield Window(k, start_s, end_s, numbers)
