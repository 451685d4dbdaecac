"""The moment of a search result as a span: where in the clip the query matches, from its saliency curve.

A search result's saliency curve has one value per sampled frame (T frames at ``frame_times``). The moment
``moment_s`` is the frame time of the peak; its span ``[moment_start_s, moment_end_s]`` is (docs/search.md
"The moment and its span"):

1. the run of contiguous frames around the peak whose saliency stays at or above
   ``floor + fraction · (peak − floor)``, with ``floor`` the curve's minimum and ``fraction`` = 0.5
   (half-way between the lowest and the highest frame: a threshold that does not depend on how flat the
   softmax over frames is; a perfectly flat curve selects every frame);
2. widened by half a frame step on each side (each sampled frame stands for the time up to half-way to
   its neighbours); a run that includes the clip's first (last) frame reaches the clip's start (end): no
   frame samples the time before the first or after the last one, so the moment may go on to the edge;
3. always inside the clip's span ``[start_s, end_s]``.

Windows cut a video into consecutive clips, so an event can cross a window edge. :func:`join_moments`
says so: when two neighbouring clips of the same video are both among the results and their moments meet
at the shared edge (the first clip's moment reaches its end, the next one's starts at its start), both
results get ``joined`` = the merged span and the clips it covers (chains of more than two clips too).

    >>> moment_span([0.1, 0.1, 0.5, 0.2, 0.1], [0, 2, 4, 6, 8], 0.0, 10.0)
    MomentSpan(peak=2, first=2, last=2, start_s=3.0, end_s=5.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The span keeps the frames whose saliency is at least floor + SPAN_FRACTION · (peak − floor).
SPAN_FRACTION = 0.5
#: Two clip edges closer than this (seconds) are the same edge.
EDGE_EPS = 1e-3


@dataclass(frozen=True)
class MomentSpan:
    peak: int          # index of the saliency peak (the frame of moment_s)
    first: int         # first and last frame index of the run around the peak
    last: int
    start_s: float     # the span in the video (seconds), inside the clip's span
    end_s: float


def moment_span(saliency, frame_times, start_s: float, end_s: float,
                fraction: float = SPAN_FRACTION) -> MomentSpan:
    """The span of the saliency curve around its peak (the rule of the module docstring)."""
    s = np.asarray(saliency, dtype=np.float64).reshape(-1)
    t = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    if s.size == 0 or s.size != t.size:
        raise ValueError(f"saliency ({s.size}) and frame_times ({t.size}) must be non-empty and of one length")
    start_s, end_s = float(start_s), float(end_s)
    peak = int(np.argmax(s))
    hi_v, lo_v = float(s[peak]), float(np.min(s))
    threshold = lo_v + fraction * (hi_v - lo_v)
    first = peak
    while first > 0 and s[first - 1] >= threshold:
        first -= 1
    last = peak
    while last < s.size - 1 and s[last + 1] >= threshold:
        last += 1
    step = float(np.median(np.diff(t))) if t.size > 1 else end_s - start_s
    step = max(step, 0.0)
    a = start_s if first == 0 else max(start_s, float(t[first]) - step / 2)
    b = end_s if last == s.size - 1 else min(end_s, float(t[last]) + step / 2)
    a, b = min(max(a, start_s), end_s), max(min(b, end_s), start_s)
    return MomentSpan(peak, first, last, a, max(a, b))


def join_moments(results) -> None:
    """Set ``joined`` on results whose moments continue into a neighbouring clip of the same video that is
    also among ``results`` (objects with video_id, clip_id, start_s, end_s, moment_start_s, moment_end_s and
    a ``joined`` attribute): ``{"start_s", "end_s", "clip_ids"}`` of the merged span, in time order.
    Results without such a neighbour keep ``joined = None``."""
    by_video: dict = {}
    for r in results:
        by_video.setdefault(r.video_id, []).append(r)
    for clips in by_video.values():
        if len(clips) < 2:
            continue
        clips = sorted(clips, key=lambda r: r.start_s)
        chain = [clips[0]]
        for r in clips[1:] + [None]:
            prev = chain[-1]
            if (r is not None and abs(r.start_s - prev.end_s) <= EDGE_EPS
                    and abs(prev.moment_end_s - prev.end_s) <= EDGE_EPS
                    and abs(r.moment_start_s - r.start_s) <= EDGE_EPS):
                chain.append(r)
                continue
            if len(chain) > 1:
                joined = {"start_s": chain[0].moment_start_s, "end_s": chain[-1].moment_end_s,
                          "clip_ids": [c.clip_id for c in chain]}
                for c in chain:
                    c.joined = dict(joined, clip_ids=list(joined["clip_ids"]))
            chain = [r]
