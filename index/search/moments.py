"""The moment of a search result as a span: where the query matches, from the per-frame relevance curve.

Every search result has, for each of its clip's T sampled frames (times ``frame_times``), a **relevance**
``r_t``: the cosine between the frame's embedding (after the temporal header) and the query (text: the
query's end-of-text feature; an example: the best cosine over the example's frames). Unlike the VCS
saliency (a softmax over the clip's frames that sums to 1 inside each clip, so it is always peaked
somewhere), relevance is on one scale across clips: a background frame scores low in every clip.

The rule (docs/search.md "The moment and its span"), with :data:`DEFAULT_RULE`:

1. **Chains.** Results of the same video whose clips follow each other without a gap (one's end is the
   next one's start) form a chain; their curves are read as one curve over the chain, in time order.
   A result with no neighbour among the results is a chain of one clip.
2. **Smoothing.** ``rs`` = moving average of ``r`` over ``2h + 1`` frames along the chain (edges repeat
   the end value), ``h = ⌊smooth_s / Δ + ½⌋`` frames for a radius of ``smooth_s`` seconds at the chain's
   frame step ``Δ`` (the median gap between frame times): about the same span of time whatever the window
   length (1 s: h = 2 at 0.5-s steps, 1 at 1–1.25-s steps, 0 beyond 2-s steps).
3. **Peak.** ``p`` = the result's own frame of highest ``rs`` (the first on ties).
4. **Run.** The contiguous frames around ``p``, along the chain, with
   ``rs ≥ floor + fraction · (rs[p] − floor)``, ``floor`` = the chain's minimum of ``rs``: a threshold
   relative to the curve's range, not to the peak alone. ``moment_s`` = the time of the frame of highest
   raw relevance among the run's frames in the result's own clip (the frame most like the query there).
5. **Times.** The run widened by half a frame step each side (each frame stands for the time up to
   half-way to its neighbours); a run that reaches the chain's first (last) frame reaches the chain's
   start (end).
6. **The result's span** ``[moment_start_s, moment_end_s]`` = the run's span cut to the result's own clip
   (always inside the clip). When the run goes on into neighbouring result clips, ``joined`` =
   ``{"start_s", "end_s", "clip_ids"}`` of the whole run (every result on it gets the same ``joined``).

    >>> moment_span([0.1, 0.1, 0.5, 0.2, 0.1], [0, 2, 4, 6, 8], 0.0, 10.0, SpanRule(0.5, 0.0))
    MomentSpan(peak=2, first=2, last=2, start_s=3.0, end_s=5.0)
    >>> moment_span([0.1, 0.1, 0.5, 0.2, 0.1], [0, 2, 4, 6, 8], 0.0, 10.0, SpanRule(0.5, 2.0))  # h = 1
    MomentSpan(peak=2, first=1, last=3, start_s=1.0, end_s=7.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Two clip edges closer than this (seconds) are the same edge.
EDGE_EPS = 1e-3


@dataclass(frozen=True)
class SpanRule:
    """The span rule's two parameters (module docstring, steps 2 and 4)."""
    fraction: float = 0.6      # the run keeps rs >= floor + fraction · (rs[peak] − floor)
    smooth_s: float = 1.0      # moving-average radius in seconds (0: none)

    def half_width(self, step: float) -> int:
        """Frames each side of the moving average at frame step ``step`` (s)."""
        return int(np.floor(self.smooth_s / step + 0.5)) if step > 0 and self.smooth_s > 0 else 0


#: The product's rule: chosen on held-out validation videos of bench/moments.py (docs/search.md).
DEFAULT_RULE = SpanRule(fraction=0.6, smooth_s=1.0)
#: Kept for callers that name the fraction alone.
SPAN_FRACTION = DEFAULT_RULE.fraction


@dataclass(frozen=True)
class MomentSpan:
    peak: int          # the frame of moment_s: highest raw value inside the run
    first: int         # first and last frame index of the run around the peak
    last: int
    start_s: float     # the span in the video (seconds), inside the clip's span
    end_s: float


def smoothed(curve, half: int) -> np.ndarray:
    """Moving average over ``2·half + 1`` values, the ends repeated (same length as ``curve``)."""
    c = np.asarray(curve, dtype=np.float64).reshape(-1)
    if half <= 0 or c.size < 2:
        return c.copy()
    k = np.full(2 * half + 1, 1.0 / (2 * half + 1))
    return np.convolve(np.pad(c, half, mode="edge"), k, mode="valid")


def _step(times) -> float:
    t = np.asarray(times, dtype=np.float64)
    return max(float(np.median(np.diff(t))), 0.0) if t.size > 1 else 0.0


def _run(rs: np.ndarray, peak: int, fraction: float) -> "tuple[int, int]":
    threshold = float(np.min(rs)) + fraction * (float(rs[peak]) - float(np.min(rs)))
    first = last = peak
    while first > 0 and rs[first - 1] >= threshold:
        first -= 1
    while last < rs.size - 1 and rs[last + 1] >= threshold:
        last += 1
    return first, last


def moment_span(curve, frame_times, start_s: float, end_s: float, rule: SpanRule = DEFAULT_RULE) -> MomentSpan:
    """The span of one clip's curve around its peak: the rule of the module docstring for a chain of one
    clip (``start_s``/``end_s`` the clip's span)."""
    s = np.asarray(curve, dtype=np.float64).reshape(-1)
    t = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    if s.size == 0 or s.size != t.size:
        raise ValueError(f"curve ({s.size}) and frame_times ({t.size}) must be non-empty and of one length")
    start_s, end_s = float(start_s), float(end_s)
    rs = smoothed(s, rule.half_width(_step(t)))
    first, last = _run(rs, int(np.argmax(rs)), rule.fraction)
    peak = first + int(np.argmax(s[first:last + 1]))
    step = _step(t) if t.size > 1 else end_s - start_s
    a = start_s if first == 0 else max(start_s, float(t[first]) - step / 2)
    b = end_s if last == s.size - 1 else min(end_s, float(t[last]) + step / 2)
    a, b = min(max(a, start_s), end_s), max(min(b, end_s), start_s)
    return MomentSpan(peak, first, last, a, max(a, b))


def _curve(r):
    c = getattr(r, "relevance", None)
    return c if c is not None and len(c) else None


def chains(results) -> "list[list]":
    """The results (objects with video_id, start_s, end_s) grouped into chains: same video, clips that
    follow each other without a gap, in time order. Results without a relevance curve (``relevance``
    empty or missing, e.g. a text-channel hit) stay out of every chain."""
    by_video: dict = {}
    for r in results:
        if _curve(r) is not None:
            by_video.setdefault(r.video_id, []).append(r)
    out = []
    for clips in by_video.values():
        clips = sorted(clips, key=lambda r: (r.start_s, r.end_s))
        chain = [clips[0]]
        for r in clips[1:]:
            if abs(r.start_s - chain[-1].end_s) <= EDGE_EPS:
                chain.append(r)
            else:
                out.append(chain)
                chain = [r]
        out.append(chain)
    return out


def _set_single(chain_rows, rule: SpanRule) -> None:
    """:func:`set_moments` for chains of one clip that share one frame count T ≥ 2, all at once: the same rule
    as :func:`moment_span` in array operations over the clips (a search grouped by video builds hundreds of
    results per request, and per-clip NumPy calls on 8-value curves cost more than the arithmetic)."""
    raw = np.array([_curve(r) for r in chain_rows], dtype=np.float64).reshape(len(chain_rows), -1)
    t = np.array([r.frame_times for r in chain_rows], dtype=np.float64).reshape(raw.shape)
    start = np.array([float(r.start_s) for r in chain_rows])
    end = np.array([float(r.end_s) for r in chain_rows])
    m, n = raw.shape
    step = np.maximum(np.median(np.diff(t, axis=1), axis=1), 0.0)
    half = (np.floor(rule.smooth_s / np.where(step > 0, step, 1.0) + 0.5).astype(int)
            if rule.smooth_s > 0 else np.zeros(m, int))
    half[step <= 0] = 0
    rs = raw.copy()
    for h in np.unique(half[half > 0]):          # moving average, ends repeated (as smoothed())
        rows = half == h
        padded = np.pad(raw[rows], ((0, 0), (h, h)), mode="edge")
        k = np.full(2 * h + 1, 1.0 / (2 * h + 1))
        rs[rows] = np.stack([np.convolve(p, k, mode="valid") for p in padded])
    idx = np.arange(m)
    peak = rs.argmax(axis=1)
    low = rs.min(axis=1)
    above = rs >= (low + rule.fraction * (rs[idx, peak] - low))[:, None]
    first, last = peak.copy(), peak.copy()
    for _ in range(n):                           # grow the run around the peak while above the threshold
        first -= (first > 0) & above[idx, np.maximum(first - 1, 0)]
        last += (last < n - 1) & above[idx, np.minimum(last + 1, n - 1)]
    cols = np.arange(n)[None, :]
    inside = (cols >= first[:, None]) & (cols <= last[:, None])
    best = np.where(inside, raw, -np.inf).argmax(axis=1)
    a = np.where(first == 0, start, np.maximum(start, t[idx, first] - step / 2))
    b = np.where(last == n - 1, end, np.minimum(end, t[idx, last] + step / 2))
    b = np.maximum(a, b)
    ms = np.minimum(np.maximum(a, start), end)
    me = np.maximum(np.minimum(b, end), ms)
    for r, x, lo, hi in zip(chain_rows, t[idx, best].tolist(), ms.tolist(), me.tolist()):
        r.moment_s, r.moment_start_s, r.moment_end_s, r.joined = x, lo, hi, None


def set_moments(results, rule: SpanRule = DEFAULT_RULE) -> None:
    """Set ``moment_s``, ``moment_start_s``, ``moment_end_s`` and ``joined`` of every result that has a
    relevance curve (objects with video_id, clip_id, start_s, end_s, frame_times, relevance), by the rule of
    the module docstring. Results without a curve are left as they are. Chains of one clip (most results)
    are done together in array operations (:func:`_set_single`), the same rule."""
    singles: dict = {}
    rest = []
    for chain in chains(results):
        r = chain[0]
        if len(chain) == 1 and len(_curve(r)) == len(r.frame_times) >= 2:
            singles.setdefault(len(r.frame_times), []).append(r)
        else:
            rest.append(chain)
    for rows in singles.values():
        _set_single(rows, rule)
    for chain in rest:
        curves = [np.asarray(_curve(r), dtype=np.float64).reshape(-1) for r in chain]
        times = [np.asarray(r.frame_times, dtype=np.float64).reshape(-1) for r in chain]
        for r, c, t in zip(chain, curves, times):
            if c.size != t.size:
                raise ValueError(f"{r.clip_id}: relevance ({c.size}) and frame_times ({t.size}) differ in length")
        raw = np.concatenate(curves)
        t = np.concatenate(times)
        owner = np.concatenate([np.full(c.size, i) for i, c in enumerate(curves)])
        offset = np.cumsum([0] + [c.size for c in curves])
        steps = [_step(x) if x.size > 1 else float(r.end_s - r.start_s) for r, x in zip(chain, times)]
        rs = smoothed(raw, rule.half_width(_step(t)))
        for i, r in enumerate(chain):
            lo_i, hi_i = int(offset[i]), int(offset[i + 1])
            first, last = _run(rs, lo_i + int(np.argmax(rs[lo_i:hi_i])), rule.fraction)
            a_i, b_i = max(first, lo_i), min(last, hi_i - 1)              # the run's frames in this clip
            peak = a_i + int(np.argmax(raw[a_i:b_i + 1]))
            fo, lo = chain[owner[first]], chain[owner[last]]
            a = chain[0].start_s if first == 0 else max(fo.start_s, float(t[first]) - steps[owner[first]] / 2)
            b = chain[-1].end_s if last == raw.size - 1 else min(lo.end_s, float(t[last]) + steps[owner[last]] / 2)
            b = max(a, b)
            r.moment_s = float(t[peak])
            r.moment_start_s = min(max(a, r.start_s), r.end_s)
            r.moment_end_s = max(min(b, r.end_s), r.moment_start_s)
            if owner[first] != i or owner[last] != i:
                r.joined = {"start_s": float(a), "end_s": float(b),
                            "clip_ids": [chain[k].clip_id for k in range(int(owner[first]), int(owner[last]) + 1)]}
            else:
                r.joined = None
