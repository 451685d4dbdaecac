"""Shot detection that decodes densely only where a cut may be, and the windows ``bike tag --windows shots`` cuts.

TransNetV2 (engine/video/transnet.py) wants every frame at 48×27; bike's decoder exists to not decode every frame.
:func:`detect` keeps both (docs/decoding.md "Shots"):

1. **Candidates from cheap signals** (no full decode):
   - packet sizes, read by demuxing (no decoding): a frame coded much larger than the frames around it
     (``SPIKE`` × their median) is where the encoder met new content: a cut, or a keyframe an encoder placed
     at a scene change (one off the stream's regular keyframe interval); a step in the level of the sizes
     (``STEP`` × between the ``STEP_SPAN`` frames before and after) is a cut to simpler or busier content;
   - keyframes decoded alone at 48×27 (``skip_frame`` of everything else): where two consecutive keyframes
     look different (mean absolute difference of 8×8 colour cells > ``KEY_DIFF``) something happened
     between them without a spike (a dissolve, a fade, a cut the sizes hide) → the frames between them.
2. **Dense decoding around candidates only**: each candidate range, widened by ``CONTEXT`` frames and merged
   with its neighbours, is decoded frame by frame at 48×27 (``engine.video.read_frames``: seeks to the
   keyframe before it) and scored by TransNetV2.
3. **Shots**: frames whose transition probability passes ``THRESHOLD`` form transitions; a run of 1-2 frames
   is a hard cut (the new shot starts after its peak), a longer run a gradual transition (the new shot
   starts at its middle). Frames never scored count as "no transition".

:func:`shot_windows` turns shots into clip windows: shots shorter than ``min_shot`` join a neighbour, a shot
longer than ``window_s`` is split into equal windows no longer than it, so no clip spans a cut.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

#: A frame coded this many times larger than the median of the frames around it is a candidate.
SPIKE = 1.5
#: Mean absolute difference (0-255) of two keyframes' 8×8 colour cells above which the frames between
#: them are a candidate range.
KEY_DIFF = 12.0
#: Frames decoded on each side of a candidate (TransNetV2 sees this much real context).
CONTEXT = 12
#: Transition probability above which a frame is part of a transition.
THRESHOLD = 0.5
#: Frames around a frame whose packet sizes form its reference median.
SIZE_SPAN = 25
#: A frame after which the median packet size of the next ``STEP_SPAN`` frames differs from the previous
#: ``STEP_SPAN`` frames' by this factor is a candidate.
STEP, STEP_SPAN = 1.5, 10


@dataclass
class ShotReport:
    """What one detection did: shots as (start_s, end_s), and its cost."""
    shots: list
    cuts: list = field(default_factory=list)           # frame numbers where a new shot starts
    frames: int = 0                                    # frames in the video
    dense_frames: int = 0                              # frames decoded at 48×27 and scored
    keyframes: int = 0                                 # keyframes decoded for the keyframe signal
    candidates: int = 0                                # candidate ranges after merging


def packet_sizes(path, index, budget=None) -> np.ndarray:
    """Each frame's coded size in bytes (presentation order), by demuxing the stream (nothing decoded)."""
    from .pyav import open_container, video_stream
    sizes = np.zeros(len(index), np.int64)
    with open_container(path) as c:
        s = video_stream(c, str(path))
        for i, p in enumerate(c.demux(s)):
            if budget is not None and i % 256 == 0:
                budget.check()
            if p.size and p.pts is not None:
                n = index.number_of(p.pts)
                if n >= 0:
                    sizes[n] = p.size
    return sizes


def spikes(sizes: np.ndarray, keyframes: np.ndarray) -> np.ndarray:
    """Frame numbers whose packet is a spike: ``SPIKE`` × the median of the non-key frames within
    ``SIZE_SPAN``; keyframes off the stream's regular keyframe interval are spikes too."""
    n = len(sizes)
    is_key = np.zeros(n, bool)
    is_key[keyframes] = True
    ref = np.where(is_key, np.nan, sizes.astype(np.float64))
    if n == 0:
        return np.zeros(0, np.int64)
    padded = np.concatenate([np.full(SIZE_SPAN, np.nan), ref, np.full(SIZE_SPAN, np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(padded, 2 * SIZE_SPAN + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)            # a window of keyframes only: NaN
        med = np.nanmedian(win, axis=1)
    hit = ~is_key & np.isfinite(med) & (sizes > SPIKE * np.maximum(np.nan_to_num(med, nan=0.0), 1.0))
    out = np.flatnonzero(hit).tolist()
    # a step: the frames after i coded at a very different size than the frames before it (a cut to
    # simpler content makes no spike, but the level of the sizes changes)
    h = STEP_SPAN
    if n > 2 * h:
        lv = np.lib.stride_tricks.sliding_window_view(np.where(is_key, np.nan, sizes.astype(np.float64)), h)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmedian(lv, axis=1)                      # m[j]: median of frames j..j+h-1
        before, after = m[:len(m) - h], m[h:]                 # around i = j + h
        ratio = np.maximum(before, after) / np.maximum(np.minimum(before, after), 1.0)
        out += (np.flatnonzero(np.nan_to_num(ratio, nan=0.0) > STEP) + h).tolist()
    if len(keyframes) > 2:
        gaps = np.diff(keyframes)
        regular = np.bincount(gaps).argmax()
        for k, gap in zip(keyframes[1:], gaps):
            if gap != regular and k != keyframes[-1]:
                out.append(int(k))
    return np.unique(np.asarray(out, np.int64))


def _cells(img: np.ndarray) -> np.ndarray:
    """8×8 colour cells (float, 8×8×3) of an (h, w, 3) image."""
    h, w = img.shape[:2]
    ys, xs = np.linspace(0, h, 9).astype(int), np.linspace(0, w, 9).astype(int)
    return np.array([[img[ys[a]:ys[a + 1], xs[b]:xs[b + 1]].reshape(-1, 3).mean(0) for b in range(8)]
                     for a in range(8)])


def candidate_ranges(n: int, spike_frames, keyframes, key_imgs) -> "list[tuple[int, int]]":
    """Merged [first, stop) frame ranges to decode densely."""
    ranges = [(max(0, f - CONTEXT), min(n, f + CONTEXT + 1)) for f in spike_frames]
    if key_imgs is not None and len(keyframes) > 1:
        cells = [_cells(im) for im in key_imgs]
        for j in range(len(keyframes) - 1):
            if np.abs(cells[j + 1] - cells[j]).mean() > KEY_DIFF:
                ranges.append((max(0, int(keyframes[j]) - CONTEXT), min(n, int(keyframes[j + 1]) + CONTEXT + 1)))
        # the tail after the last keyframe is compared with the last frame by nobody: leave it to the spikes
    ranges.sort()
    merged: list = []
    for a, b in ranges:
        if merged and a <= merged[-1][1] + CONTEXT:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def transitions(prob: np.ndarray, threshold: float = THRESHOLD) -> "list[int]":
    """Frame numbers where a new shot starts, from per-frame transition probabilities."""
    above = prob > threshold
    cuts, i, n = [], 0, len(prob)
    while i < n:
        if not above[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and above[j + 1]:
            j += 1
        if j - i + 1 <= 2:
            start = i + int(np.argmax(prob[i:j + 1])) + 1       # a hard cut: the frame after the peak
        else:
            start = (i + j + 1) // 2                           # gradual: the middle of the transition
        if 0 < start < n:
            cuts.append(start)
        i = j + 1
    return cuts


def detect(path, info=None, timeout_s: "float | None" = None, score=None, decoder: str = "pyav",
           keyframe_signal: bool = True) -> ShotReport:
    """Shots of ``path`` (see the module doc). ``score``: frames uint8 (n, 27, 48, 3) → probabilities (n,)
    (default: TransNetV2, ``engine.video.transnet.predict``)."""
    from engine.video import clips
    from .types import Budget, decode_timeout
    if score is None:
        from engine.video.transnet import predict as score
    dec = clips.get_decoder(decoder)
    info = info or clips.probe(path, decoder=dec)
    budget = Budget(str(path), decode_timeout(info.duration_s) if timeout_s is None else timeout_s, "shot detection")
    index = dec.frame_index(path, info, budget)
    n = len(index)
    keys = np.asarray(index.keyframes, np.int64)
    sizes = packet_sizes(path, index, budget)
    spk = spikes(sizes, keys)
    key_imgs = None
    if keyframe_signal and len(keys) > 1:
        key_imgs = clips.read_frames(path, keys.tolist(), 48, 27, timeout_s=timeout_s, info=info, decoder=dec,
                                     threads=1)
    ranges = candidate_ranges(n, spk, keys, key_imgs)
    prob = np.zeros(n, np.float32)
    dense = 0
    for a, b in ranges:
        budget.check()
        frames = clips.read_frames(path, list(range(a, b)), 48, 27, timeout_s=timeout_s, info=info,
                                   decoder=dec, threads=1)
        dense += len(frames)
        prob[a:a + len(frames)] = np.maximum(prob[a:a + len(frames)], score(frames))
    cuts = transitions(prob)
    times = index.times
    edges = [0.0] + [float(times[c]) for c in cuts] + [max(float(info.duration_s), float(times[-1]))]
    shots = [(edges[i], edges[i + 1]) for i in range(len(edges) - 1) if edges[i + 1] > edges[i]]
    return ShotReport(shots, cuts, n, dense, len(keys) if key_imgs is not None else 0, len(ranges))


def shot_windows(shots, window_s: "float | None", min_shot: float = 1.0) -> "list[tuple[float, float]]":
    """Clip windows (start_s, end_s) from shots: shots shorter than ``min_shot`` join the previous shot (the
    first one the next), then each shot longer than ``window_s`` is split into equal windows ≤ ``window_s``."""
    merged: list = []
    for a, b in shots:
        if merged and (b - a < min_shot or merged[-1][1] - merged[-1][0] < min_shot):
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    out = []
    for a, b in merged:
        k = 1 if not window_s or b - a <= window_s else math.ceil((b - a) / window_s - 1e-9)
        step = (b - a) / k
        out.extend((a + i * step, b if i == k - 1 else a + (i + 1) * step) for i in range(k))
    return out
