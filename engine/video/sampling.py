"""Which frames and which pixels of a video the model sees (docs/model.md §7).

Pure functions on integers and floats, shared by tagging, evaluation and training:

- ``segment_indices``: the eval / 1-view frame indices (first frame of each of T segments).
- ``view_offsets``: the temporal offsets of a multi-clip test (``clips`` views spread over one segment).
- ``random_segment_indices``: training sampling, one random frame inside each segment.
- ``crop_boxes``: where the 1 or 3 spatial crops of a resized frame start.
- ``windows``: how a long video is cut into consecutive time windows, one clip each.

Nothing here touches files; ``engine.video`` turns these numbers into decoded frames.
"""

from __future__ import annotations

import math

#: A final window shorter than this (seconds) is merged into the previous one.
MIN_LAST_WINDOW_S = 0.5


def _check_n_T(n: int, T: int) -> None:
    if n < 1:
        raise ValueError(f"need at least one frame to sample from, got n={n}")
    if T < 1:
        raise ValueError(f"need at least one frame per clip, got T={T}")


def segment_indices(n: int, T: int, offset: float = 0.0) -> list[int]:
    """Eval frame indices: ``floor(n/T * i + offset) mod n`` for i = 0..T-1.

    The n frames are cut into T equal segments of ``n/T`` frames and the frame at ``offset``
    inside each segment is taken (offset 0: the first frame of each segment). When n < T the
    formula repeats frames, e.g. ``segment_indices(3, 8) == [0, 0, 0, 1, 1, 1, 2, 2]``.

    ``n/T * i`` is computed in floating point like the reference code; for T a power of two
    (8, 16, 32) it is exact, so the result equals the integer ``(n * i) // T``.
    """
    _check_n_T(n, T)
    tick = n / T
    return [int(math.floor(tick * i + offset)) % n for i in range(T)]


def view_offsets(n: int, T: int, clips: int) -> list[float]:
    """Temporal offsets of a ``clips``-view test: clip k starts ``k * (n/T) / clips`` frames in.

    The offsets are spread evenly over one segment length, so ``clips=1`` gives ``[0.0]`` and
    every view still takes one frame per segment (feed each offset to ``segment_indices``).
    """
    _check_n_T(n, T)
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    tick = n / T
    return [k * tick / clips for k in range(clips)]


def random_segment_indices(n: int, T: int, rng) -> list[int]:
    """Training indices: one uniformly random frame inside each of the T segments.

    Segment i covers frames ``[floor(n*i/T), floor(n*(i+1)/T))``; when n < T a segment can be
    empty and then yields its first frame ``floor(n*i/T)``. ``rng`` is a ``numpy.random.Generator``
    (uses ``rng.integers``) or a ``random.Random`` (uses ``rng.randrange``).
    """
    _check_n_T(n, T)
    draw = rng.integers if hasattr(rng, "integers") else rng.randrange
    out = []
    for i in range(T):
        lo = (n * i) // T
        hi = max((n * (i + 1)) // T, lo + 1)  # exclusive; at least one frame
        out.append(int(draw(lo, hi)))
    return out


def crop_boxes(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y0, x0)`` of the ``size``×``size`` crops of a height×width frame.

    ``crops=1``: the centre crop. ``crops=3``: start / centre / end along the long side, centred
    on the short side (left, centre, right for landscape or square frames; top, centre, bottom
    for portrait ones).
    """
    if size > height or size > width:
        raise ValueError(f"crop {size} does not fit in a {width}x{height} frame")
    cy, cx = (height - size) // 2, (width - size) // 2
    if crops == 1:
        return [(cy, cx)]
    if crops == 3:
        if width >= height:
            return [(cy, 0), (cy, cx), (cy, width - size)]
        return [(0, cx), (cy, cx), (height - size, cx)]
    raise ValueError(f"crops must be 1 or 3, got {crops}")


def windows(duration_s: float, window_s: float | None) -> list[tuple[float, float]]:
    """Cut ``[0, duration_s)`` into consecutive windows ``[k*w, min((k+1)*w, duration_s))``.

    ``window_s=None`` or a video no longer than one window gives a single window covering the
    whole video. A last window shorter than ``MIN_LAST_WINDOW_S`` (0.5 s) is merged into the one
    before it, so ``windows(20.3, 10) == [(0, 10), (10, 20.3)]``.
    """
    if duration_s <= 0:
        raise ValueError(f"duration must be > 0, got {duration_s}")
    if window_s is not None and window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    if window_s is None or duration_s <= window_s:
        return [(0.0, float(duration_s))]
    out = []
    k = 0
    while k * window_s < duration_s:
        out.append((k * window_s, min((k + 1) * window_s, float(duration_s))))
        k += 1
    if len(out) > 1 and out[-1][1] - out[-1][0] < MIN_LAST_WINDOW_S:
        out[-2:] = [(out[-2][0], out[-1][1])]
    return out
