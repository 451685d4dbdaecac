"""The public reading functions, the same for every backend: probe, iter_clips, read_video, read_frames.

``iter_clips`` probes (unless given ``info``), indexes the stream's frames (real timestamps, keyframes),
plans the windows lazily (``plan.plan``), asks the decoder for exactly the sampled frame numbers, resized
so the short side is ``resize``, and cuts the crops in numpy. A ``Clip`` is yielded as soon as its window
is complete, so memory stays bounded on a 1-hour or 4K file. Decode problems (concealed corruption) are
attached to the clips as ``warnings``; past ``base.CORRUPT_ERROR_SHARE`` of damaged frames the video is a
``VideoError``.
"""
from __future__ import annotations

import bisect
import logging
from typing import Iterator

import numpy as np

from .sampling import crop_boxes
from .transform import resized_size
from .base import DecodeReport, Decoder, default_sampling, get_decoder
from .plan import SAMPLINGS, Window, plan
from .types import (Budget, ByteSource, Clip, ReadError, VideoError, VideoInfo, check_file, check_input, check_source,
                    decode_timeout, input_name)

log = logging.getLogger("engine.video")


def probe(path, timeout_s: float = 30.0, decoder: "str | Decoder | None" = None) -> VideoInfo:
    """Read a video's facts (``VideoInfo``) with the chosen decoder's probe.

    Raises ``VideoError`` for: missing file, directory or other non-file, no read permission, empty file,
    not a video, a refused container format (playlists), no video stream, corrupt/truncated header, zero
    duration, unknown frame rate, or taking longer than ``timeout_s``. ``path`` may be a ``ByteSource``
    (a decoder whose ``reads_sources`` is true): a failed read is then a ``VideoError`` with its reason.
    """
    path = _input(path)
    check_input(path)
    with _reads(path):
        info = _decoder_for(path, decoder).probe(path, timeout_s=timeout_s)
    check_source(path)
    return info


def _input(path):
    return path if isinstance(path, ByteSource) else str(path)


def _decoder_for(path, decoder) -> Decoder:
    dec = get_decoder(decoder)
    if isinstance(path, ByteSource) and not dec.reads_sources:
        raise VideoError(path.name, f"the {dec.name} decoder reads local files only")
    return dec


class _reads:
    """Turns a ``ByteSource`` read failure met inside a decoder into ``VideoError(name, reason)``."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if not isinstance(e, Exception):
            return False
        failure = self.path.failure if isinstance(self.path, ByteSource) else None
        if failure or isinstance(e, ReadError):              # what the decoder made of it does not matter
            raise VideoError(input_name(self.path), failure or e.reason) from None
        return False


def iter_clips(path, frames: int = 8, window_s: "float | None" = None, size: int = 224,
               resize: int = 256, clips: int = 1, crops: int = 1,
               timeout_s: "float | None" = None, info: "VideoInfo | None" = None,
               threads: "int | None" = None, decoder: "str | Decoder | None" = None,
               sampling: "str | None" = None, spans: "list | None" = None) -> Iterator[Clip]:
    """Decode a video as consecutive time windows, one ``Clip`` of ``frames`` frames per window.

    ``window_s=None``: the whole video is one window. Each window's n frames are sampled with
    ``segment_indices(n, frames, offset)`` for ``clips`` offsets (``view_offsets``), resized so the short
    side is ``resize`` and cut into ``crops`` crops of ``size`` (1: centre; 3: along the long side) ->
    ``Clip.frames`` (clips*crops, frames, size, size, 3). Windows and frame times come from the frames'
    own timestamps. ``sampling`` (default: ``base.default_sampling``, i.e. ``--sampling``, ``$BIKE_SAMPLING`` or "exact") "keyframes": approximate, each
    sample is the keyframe nearest to its segment's centre (much faster; ``frame_times`` are those keyframes' real times).

    ``decoder``: "auto" (default), "pyav", "ffmpeg", "nvdec" or a ``Decoder``. ``threads`` caps the
    decoder's threads. ``spans``: explicit windows (start_s, end_s) instead of ``window_s`` (shots:
    ``engine.video.shots.shot_windows``). Decoding longer than ``timeout_s`` (default ``decode_timeout``; only time inside
    this generator counts) -> ``VideoError``, possibly after some clips were yielded.

    If the stream ends before a sampled frame (it holds less than its index promised: a truncated file),
    that frame is replaced by the last frame that arrived, and its time by that frame's time, so
    ``frame_times`` always describe the pixels; windows after the end get no clip. No frame at all ->
    VideoError.
    """
    path = _input(path)
    if size > resize:
        raise ValueError(f"crop size {size} is larger than the resize {resize}")
    sampling = sampling or default_sampling()
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    dec = _decoder_for(path, decoder)
    if info is None:
        info = probe(path, decoder=dec)
    else:
        check_input(path)
    budget = Budget(input_name(path), decode_timeout(info.duration_s) if timeout_s is None else timeout_s)
    with _reads(path):
        index = dec.frame_index(path, info, budget)
    check_source(path)
    windows = list(plan(index, frames, window_s, clips, sampling, spans))
    if not windows:
        if info.duration_s > 0:
            raise VideoError(path, f"corrupt or truncated: the header promises {info.duration_s:g} s of "
                                   "video but the file holds no frame")
        raise VideoError(path, "zero duration: the video stream holds no frames")
    needed = sorted({f for win in windows for row in win.numbers for f in row})
    out_w, out_h = resized_size(info.width, info.height, resize)
    boxes = crop_boxes(out_h, out_w, size, crops)
    report = DecodeReport()
    stream = dec.frames(path, needed, out_w, out_h, info, index, budget, threads, report,
                        keyframes_only=sampling == "keyframes")
    pending: list = []                       # a frame taken from the stream that belongs to a later window

    def take(upto: int) -> dict:
        """Frames from the stream up to number ``upto`` (the stream yields increasing numbers)."""
        out = {}
        while True:
            item = pending.pop() if pending else next(stream, None)
            if item is None:
                return out
            if item[0] > upto:
                pending.append(item)
                return out
            out[item[0]] = item[1]

    try:
        last = None  # (frame_number, frame) most recently received
        have: dict = {}                      # the previous window's frames (keyframes mode may share one)
        for win in windows:
            wanted = {f for row in win.numbers for f in row}
            got = {n: have[n] for n in wanted if n in have}
            with _reads(path):
                got.update(take(max(wanted)))
            check_source(path)               # a read that failed: an error, never the part that arrived
            budget.check()
            if got:
                last = max(got.items(), key=lambda kv: kv[0])
            if last is None:
                raise VideoError(path, "corrupt or truncated: no frame could be decoded")
            if not got:
                break  # the stream ended before this window
            if len(got) < len(wanted):
                log.warning("%s: %d of %d sampled frames of window %d did not decode (damaged or past the "
                            "end of the stream); the nearest earlier frame stands in", path,
                            len(wanted) - len(got), len(wanted), win.index)
            if report.too_damaged():
                raise VideoError(path, f"corrupt: {report.damaged} of {report.decoded} decoded frames "
                                       f"damaged ({'; '.join(report.take()[:2])})")
            clip = _make_clip(win, got, last, boxes, size, index.times)
            clip.warnings = report.take()
            have = got
            budget.pause()
            yield clip
            budget.resume()
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()


def _make_clip(win: Window, got: dict, last, boxes, size: int, times) -> Clip:
    """Assemble (V, T, S, S, 3) from the window's frames; a missing frame -> the nearest earlier one."""
    T = len(win.numbers[0])
    views = len(win.numbers) * len(boxes)
    out = np.empty((views, T, size, size, 3), np.uint8)
    frame_times = []
    have = sorted(got)
    for c, row in enumerate(win.numbers):
        for t, number in enumerate(row):
            if number not in got:  # damaged, or past the end of the stream: the nearest earlier frame
                i = bisect.bisect_right(have, number) - 1
                number = have[i] if i >= 0 else have[0]
            img = got[number]  # (H, W, 3)
            for j, (y0, x0) in enumerate(boxes):
                out[c * len(boxes) + j, t] = img[y0:y0 + size, x0:x0 + size]
            if c == 0:
                frame_times.append(float(times[number]))
    return Clip(index=win.index, start_s=win.start_s, end_s=win.end_s, frame_times=frame_times, frames=out)


def read_frames(path, numbers: "list[int] | None", width: int, height: int,
                timeout_s: "float | None" = None, info: "VideoInfo | None" = None,
                decoder: "str | Decoder | None" = None, threads: "int | None" = None) -> np.ndarray:
    """Frames ``numbers`` (sorted, unique; None = every frame) of the first video stream, as displayed,
    scaled (bicubic) to exactly ``width`` × ``height`` -> uint8 (n, height, width, 3), in order.

    For callers that choose their own frames (training's random segment sampling). Same decoders, time
    limit (default ``decode_timeout``) and errors as :func:`iter_clips`; numbers past the end of the stream
    give fewer frames; no frame at all -> ``VideoError``.
    """
    path = _input(path)
    dec = _decoder_for(path, decoder)
    check_input(path)
    info = info or probe(path, decoder=dec)
    budget = Budget(input_name(path), decode_timeout(info.duration_s) if timeout_s is None else timeout_s)
    with _reads(path):
        index = dec.frame_index(path, info, budget)
    wanted = list(range(len(index))) if numbers is None else [n for n in numbers if 0 <= n < len(index)]
    out = []
    if wanted:
        stream = dec.frames(path, wanted, width, height, info, index, budget, threads, DecodeReport())
        try:
            with _reads(path):
                out = [img for _, img in stream]
        finally:
            getattr(stream, "close", lambda: None)()
    check_source(path)
    budget.check()
    if not out:
        raise VideoError(path, "corrupt or truncated: no frame could be decoded")
    return np.stack(out)


def read_frame_at(path, t: float, width: int, timeout_s: float = 20.0,
                  decoder: "str | Decoder | None" = None, threads: "int | None" = None) -> "tuple[np.ndarray, float]":
    """The frame shown at ``t`` seconds (the last frame whose own timestamp is <= t), scaled to ``width`` with
    the display aspect kept (even height) -> (uint8 (height, width, 3), its real time in seconds). For
    thumbnails (``bike serve``): the same decoders, file guard, time limit and errors as :func:`read_frames`
    (``threads``: decoder threads, as there; ``bike serve`` asks for 1). ``path`` may be a byte source."""
    path = path if isinstance(path, ByteSource) else str(path)
    dec = get_decoder(decoder)
    check_input(path)
    info = dec.probe(path, timeout_s=timeout_s)
    budget = Budget(input_name(path), timeout_s)
    index = dec.frame_index(path, info, budget)
    if not len(index):
        raise VideoError(input_name(path), "no video frame to show")
    n = max(0, bisect.bisect_right(list(index.times), max(0.0, float(t))) - 1)
    height = max(2, int(round(width * info.height / max(1, info.width) / 2)) * 2)
    frame = read_frames(path, [n], width, height, timeout_s=timeout_s, info=info, decoder=dec, threads=threads)[0]
    return frame, float(index.times[n])


def read_video(path, frames: int = 8, size: int = 224, resize: int = 256, clips: int = 1,
               crops: int = 1, timeout_s: "float | None" = None, threads: "int | None" = None,
               decoder: "str | Decoder | None" = None, sampling: "str | None" = None) -> Clip:
    """The whole video as ONE clip (one window), for classification and evaluation."""
    gen = iter_clips(path, frames=frames, window_s=None, size=size, resize=resize, clips=clips,
                     crops=crops, timeout_s=timeout_s, threads=threads, decoder=decoder, sampling=sampling)
    try:
        return next(gen)
    finally:
        gen.close()
