"""The frame index of a video stream: every frame's real timestamp and which frames are keyframes.

Built by demuxing the file with PyAV (reading packets, decoding nothing: ~15 ms for 45 MB of 720p
H.264 from the page cache). Everything downstream plans from it, for every backend:

- frame numbers are ranks in presentation order (the order a decoder outputs frames, and the ``n`` of
  ffmpeg's ``select`` filter), frame times are the frames' own timestamps, so variable-frame-rate
  video gets true times instead of ``n / average fps``;
- the frame count and duration are what the stream really holds, not what the header claims: a 6.8 KB
  file whose header says 5555 h indexes to its few real packets, so plans stay small;
- the keyframe ranks let the in-process decoder seek to the GOP of a target and skip GOPs without
  targets, and ``--sampling keyframes`` pick keyframes near segment centres.

Packets the demuxer marks as discard (before an edit list's start) are left out, as decoders drop them.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: Most frames indexed per video (10 h at 60 fps); a stream with more is cut there with a warning.
MAX_FRAMES = 2_200_000


@dataclass
class FrameIndex:
    """``pts[n]``: frame n's timestamp (stream time base) in presentation order; ``times[n]`` the same in
    seconds from the first frame; ``keyframes``: sorted ranks of the keyframes; ``duration_s``: from the
    first frame to the end of the last one."""

    pts: np.ndarray          # (N,) int64, sorted, unique
    times: np.ndarray        # (N,) float64 seconds, times[0] == 0
    keyframes: np.ndarray    # (K,) int64 frame numbers
    time_base: Fraction
    duration_s: float
    truncated: bool = False  # MAX_FRAMES reached

    def __len__(self) -> int:
        return len(self.pts)

    def number_of(self, pts: int) -> int:
        """Frame number of a decoded frame's pts; -1 when it is not in the index."""
        i = int(np.searchsorted(self.pts, pts))
        return i if i < len(self.pts) and self.pts[i] == pts else -1

    def keyframe_before(self, number: int) -> int:
        """The last keyframe at or before frame ``number`` (in presentation order); 0 when none."""
        i = int(np.searchsorted(self.keyframes, number, side="right")) - 1
        return int(self.keyframes[i]) if i >= 0 else 0

    def nearest_keyframe(self, t: float, first: int = 0, stop: "int | None" = None) -> int:
        """The keyframe whose time is nearest to ``t`` seconds, among frames ``first..stop-1`` when that
        range holds one (a window's own keyframes), else among all."""
        keys = self.keyframes
        inside = keys[(keys >= first) & (keys < (len(self) if stop is None else stop))]
        if len(inside):
            keys = inside
        kt = self.times[keys]
        i = int(np.searchsorted(kt, t))
        best = [j for j in (i - 1, i) if 0 <= j < len(kt)]
        return int(keys[min(best, key=lambda j: abs(kt[j] - t))])


def from_packets(pts: list, keys: list, durations: list, time_base: Fraction, fps: float,
                 truncated: bool = False) -> FrameIndex:
    """Build the index from the demuxed packets of one stream (decode order). ``pts`` entries may be
    None (no timestamp): then the packets are numbered in order at ``fps``."""
    tb = Fraction(time_base) if time_base else Fraction(1, 90000)
    if not pts:
        return FrameIndex(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), tb, 0.0, truncated)
    if any(p is None for p in pts):          # raw streams without timestamps: constant rate
        step = max(1, round(1 / (fps * tb))) if fps > 0 else 1
        pts = [i * step for i in range(len(pts))]
    raw = np.asarray(pts, np.int64)
    order = np.argsort(raw, kind="stable")
    sorted_pts = raw[order]
    unique = np.concatenate([[True], np.diff(sorted_pts) > 0])
    rank = np.cumsum(unique) - 1                                     # rank of each sorted packet
    ranks_by_packet = np.empty(len(raw), np.int64)
    ranks_by_packet[order] = rank
    key_ranks = np.unique(ranks_by_packet[np.asarray(keys, bool)]) if any(keys) else np.zeros(1, np.int64)
    upts = sorted_pts[unique]
    rel = upts - upts[0]
    times = rel.astype(np.float64) * tb.numerator / tb.denominator   # exact for CFR: n*512/12800 == n/25
    last_dur = durations[int(order[-1])] if durations[int(order[-1])] else 0
    if not last_dur:
        last_dur = int(np.median(np.diff(upts))) if len(upts) > 1 else (round(1 / (fps * tb)) if fps > 0 else 0)
    duration = float((int(rel[-1]) + int(last_dur)) * tb)
    if duration <= 0:
        duration = float(times[-1]) or (1.0 / fps if fps > 0 else 0.04)
    return FrameIndex(upts, times, key_ranks, tb, duration, truncated)
