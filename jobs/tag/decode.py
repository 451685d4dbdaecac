"""The decoding stage of ``bike tag``: one video → a stream of small messages and frame chunks. No Ray here.

:func:`decode_video` is a plain generator; ``jobs.tag.stages.DecodeStage`` runs it (as a Ray streaming task on Ray,
typing each message as a dataclass of ``jobs.tag.tasks``) so that only
the frames the sampler needs, already resized and cropped, leave the worker, a few clips at a time (memory
stays bounded on a 1-hour or 4K file). What it yields, in order:

    {"kind": "head", "info": VideoInfo | None, "error": reason | None}       the probe
    {"kind": "shots", "shots": [(start_s, end_s)], "detector": name, "version": str, "cost": {...}}
                                             ``windows="shots"`` only, when the shots were detected here
    {"kind": "chunk", "spans": [ClipSpan]}   then   frames uint8 (n, T, S, S, 3)    zero or more pairs
    {"kind": "end", "clips": n, "error": reason | None, "decode_s": seconds, "warnings": [str],
     "decoder": name}

The message before each frame array says what the array is, so the driver can forward arrays to the model
without ever fetching them. A video that cannot be decoded (engine.video.VideoError: empty, truncated, not a
video, audio only, decoder past its time limit, ...) ends with an ``error``; clips already yielded are then
discarded by the driver (a video is tagged whole or recorded as an error, never half). Decode problems
that did not make the video an error (concealed corruption, a truncated tail) come back as ``warnings``
and are stored on the video's row.
"""
from __future__ import annotations

import time

import numpy as np

from engine import video as ev

from .records import ClipSpan

#: Clips per frame chunk (8 clips × 8 frames × 224² × 3 ≈ 9.6 MB).
CHUNK_CLIPS = 8
#: Decode warnings kept per video (the rest are counted in the first ones' clips).
MAX_WARNINGS = 20


def decode_video(path: str, frames: int = 8, window_s: "float | None" = 10.0, size: int = 224,
                 resize: int = 256, chunk_clips: int = CHUNK_CLIPS, timeout_s: "float | None" = None,
                 threads: "int | None" = None, decoder: "str | None" = None, sampling: "str | None" = None,
                 windows: str = "fixed", min_shot: float = 1.0, shots: "list | None" = None):
    """Probe ``path`` and decode it window by window; yields the messages described in the module doc.
    ``decoder``/``sampling``: see ``engine.video.iter_clips`` (None: ``$BIKE_DECODER``/``$BIKE_SAMPLING``,
    else auto / exact). ``windows="shots"``: the windows are the video's shots (``shots`` when known, else
    detected here: ``engine.video.shots.detect``), split to ≤ ``window_s`` and with shots shorter than
    ``min_shot`` joined to a neighbour, so no clip spans a cut."""
    t0 = time.perf_counter()
    dec = ev.get_decoder(decoder)
    warnings: list = []
    try:
        info = ev.probe(path, decoder=dec)
    except ev.VideoError as e:
        yield {"kind": "head", "info": None, "error": e.reason}
        yield {"kind": "end", "clips": 0, "error": e.reason, "decode_s": time.perf_counter() - t0,
               "warnings": warnings, "decoder": dec.name}
        return
    yield {"kind": "head", "info": info, "error": None}
    spans, arrays, n, error = [], [], 0, None
    plan = None
    if windows == "shots":
        from engine.video import shots as sh
        try:
            if shots is None:
                from engine.video import transnet
                report = sh.detect(path, info=info, timeout_s=timeout_s)
                shots = report.shots
                yield {"kind": "shots", "shots": shots, "detector": transnet.NAME, "version": transnet.version(),
                       "cost": {"frames": report.frames, "dense_frames": report.dense_frames,
                                "keyframes": report.keyframes, "candidates": report.candidates}}
            plan = sh.shot_windows(shots, window_s, min_shot)
        except ev.VideoError as e:
            yield {"kind": "end", "clips": 0, "error": f"shot detection: {e.reason}",
                   "decode_s": time.perf_counter() - t0, "warnings": warnings, "decoder": dec.name}
            return

    def flush():
        msg = {"kind": "chunk", "spans": list(spans)}
        chunk = np.ascontiguousarray(np.stack(arrays)) if len(arrays) > 1 else arrays[0][None]
        spans.clear()
        arrays.clear()
        return msg, chunk

    try:
        for clip in ev.iter_clips(path, frames=frames, window_s=window_s, size=size, resize=resize,
                                  timeout_s=timeout_s, info=info, threads=threads, decoder=dec, sampling=sampling,
                                  spans=plan):
            warnings.extend(f"clip {clip.index}: {w}" for w in clip.warnings)
            spans.append(ClipSpan(clip.index, clip.start_s, clip.end_s, list(clip.frame_times)))
            arrays.append(clip.frames[0])                        # one view: (T, S, S, 3)
            n += 1
            if len(spans) >= chunk_clips:
                msg, chunk = flush()
                yield msg
                yield chunk
        if spans:
            msg, chunk = flush()
            yield msg
            yield chunk
        if n == 0:
            error = "no frame could be decoded"
    except ev.VideoError as e:
        error = e.reason
    yield {"kind": "end", "clips": n, "error": error, "decode_s": time.perf_counter() - t0,
           "warnings": warnings[:MAX_WARNINGS], "decoder": dec.name}
