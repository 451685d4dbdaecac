"""Cutting a span out of a video into a new MP4, in-process with PyAV (no ffmpeg binary, no temp files).

Two modes:

- **fast** (default): the packets are copied as they are (no re-encode). A cut can only start on a
  keyframe, so the file starts at the keyframe at or before the requested start: ``ExportReport.start_s``
  says where it really starts (``early_s`` how much earlier). Video and audio are copied until the
  requested end. The cost is reading the bytes of the span; nothing is decoded.
- **exact** (``exact=True``): decoded from that keyframe and re-encoded (H.264 via libx264, yuv420p;
  audio to AAC), keeping exactly the frames whose timestamps lie in ``[start, end)``: frame-exact.

Inputs are opened with the decoders' guards (:func:`engine.video.pyav.open_container`: single-file demuxers,
the file protocol or a byte source's own reader), the span is capped (``MAX_SPAN_S``) and the work is under a
time budget. The output is written under a temporary name and renamed when complete, so a failed export
leaves no half file.
"""
from __future__ import annotations

import math
import os
import uuid
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from .types import Budget, ByteSource, VideoError, check_input, input_name

#: The longest span one export may cut (seconds).
MAX_SPAN_S = 3600.0
#: Seconds of work allowed per exported second (at least ``MIN_BUDGET_S``): a stuck input fails, never hangs.
BUDGET_PER_S = 4.0
MIN_BUDGET_S = 60.0


@dataclass
class ExportReport:
    """What one export wrote."""
    path: str                   # the file written
    start_s: float              # where the output really starts in the source (fast mode: a keyframe)
    end_s: float                # where it ends in the source
    requested_start_s: float
    requested_end_s: float
    exact: bool
    video_frames: int
    audio: bool                 # whether an audio stream was kept
    bytes: int

    @property
    def early_s(self) -> float:
        """How much earlier than asked the output starts (0 for exact exports)."""
        return max(0.0, self.requested_start_s - self.start_s)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["early_s"] = round(self.early_s, 3)
        return d


def _seconds(ts, tb) -> "float | None":
    return None if ts is None or tb is None else float(ts * tb)


def _first_audio(container):
    for s in container.streams.audio:
        if s.codec_context is not None and s.codec_context.sample_rate:
            return s
    return None


def export_span(src, start_s: float, end_s: float, out: "str | os.PathLike", exact: bool = False,
                timeout_s: "float | None" = None, audio: bool = True) -> ExportReport:
    """Write ``[start_s, end_s)`` of ``src`` (a path or a ``ByteSource``) to the MP4 ``out``.

    Raises :class:`VideoError` (naming the input) when the span is empty or too long, the input has no
    video, or it cannot be read in time."""
    from .pyav import open_container, video_stream
    name = input_name(src)
    start_s, end_s = max(0.0, float(start_s)), float(end_s)
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s <= start_s:
        raise VideoError(name, f"nothing to export: the span {start_s:g}–{end_s:g} s is empty")
    if end_s - start_s > MAX_SPAN_S:
        raise VideoError(name, f"the span is {end_s - start_s:.0f} s; one export cuts at most {MAX_SPAN_S:.0f} s")
    if not isinstance(src, ByteSource):
        check_input(src)
    budget = Budget(name, timeout_s or max(MIN_BUDGET_S, BUDGET_PER_S * (end_s - start_s)), what="exporting")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.part")
    container = open_container(src)
    try:
        vin = video_stream(container, name)
        ain = _first_audio(container) if audio else None
        with open(tmp, "wb") as f:
            if exact:
                first, last, frames = _reencode(container, vin, ain, start_s, end_s, f, budget)
            else:
                first, last, frames = _copy(container, vin, ain, start_s, end_s, f, budget)
        if frames == 0:
            raise VideoError(name, f"no video frame between {start_s:g} and {end_s:g} s")
        os.replace(tmp, out)
    except VideoError:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg/PyAV errors on a hostile file become one line
        raise VideoError(name, f"export failed: {type(e).__name__}: {e}") from None
    finally:
        container.close()
        tmp.unlink(missing_ok=True)
    return ExportReport(path=str(out), start_s=round(first, 3), end_s=round(last, 3),
                        requested_start_s=start_s, requested_end_s=end_s, exact=exact, video_frames=frames,
                        audio=ain is not None, bytes=out.stat().st_size)


def _seek(container, vin, start_s: float) -> None:
    """To the keyframe at or before ``start_s`` (the stream's own time base)."""
    if start_s <= 0:
        container.seek(0, backward=True, any_frame=False, stream=vin)
        return
    container.seek(int(start_s / vin.time_base), backward=True, any_frame=False, stream=vin)


def _copy(container, vin, ain, start_s, end_s, f, budget) -> "tuple[float, float, int]":
    """Stream copy from the keyframe at/before ``start_s`` to ``end_s``; timestamps rebased to 0."""
    import av
    _seek(container, vin, start_s)
    outc = av.open(f, "w", format="mp4", options={"avoid_negative_ts": "make_zero"})
    try:
        vout = outc.add_stream_from_template(vin)
        aout = outc.add_stream_from_template(ain) if ain is not None else None
        t0 = None                          # the source time the output starts at (the first keyframe)
        frames, shown, last = 0, 0, start_s
        video_done, audio_done = False, aout is None
        pending_audio = []                 # audio packets seen before the first video keyframe
        streams = [vin] + ([ain] if ain is not None else [])
        for packet in container.demux(streams):
            budget.check()
            if packet.pts is None or packet.size == 0:
                continue
            t = float(packet.pts * packet.time_base)
            if packet.stream is vin:
                # Decode order: every frame shown before end_s is decoded before end_s, so copying by the
                # decode timestamp keeps the references B-frames need (a frame or two past end_s may come).
                d = float(packet.dts * packet.time_base) if packet.dts is not None else t
                if t0 is None:
                    if not packet.is_keyframe:
                        continue           # a seek landed mid-GOP: wait for the next keyframe
                    t0 = t
                if d >= end_s:
                    video_done = True
                else:
                    _mux(outc, packet, vout, t0)
                    end = t + (_seconds(packet.duration, packet.time_base) or 0.0)
                    frames += 1
                    shown += end > start_s and t < end_s
                    last = max(last, end)
            else:
                if t0 is None:
                    pending_audio.append(packet)
                    continue
                for p in pending_audio:    # audio from the keyframe on
                    if float(p.pts * p.time_base) >= t0:
                        _mux(outc, p, aout, t0)
                pending_audio = []
                if t >= end_s:
                    audio_done = True
                elif t >= t0:
                    _mux(outc, packet, aout, t0)
            if video_done and (audio_done or t > end_s + 2.0):
                break
        return (t0 if t0 is not None else start_s), last, (frames if shown else 0)
    finally:
        outc.close()


def _mux(outc, packet, stream, t0: float) -> None:
    off = int(round(t0 / packet.time_base))
    packet.pts -= off
    if packet.dts is not None:
        packet.dts -= off
    packet.stream = stream
    outc.mux(packet)


def _reencode(container, vin, ain, start_s, end_s, f, budget) -> "tuple[float, float, int]":
    """Decode from the keyframe at/before ``start_s``; encode exactly the frames in ``[start_s, end_s)``."""
    import av
    _seek(container, vin, start_s)
    outc = av.open(f, "w", format="mp4")
    try:
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        vout = outc.add_stream("libx264", rate=rate)
        cc = vin.codec_context
        vout.width, vout.height = cc.width - cc.width % 2, cc.height - cc.height % 2
        vout.pix_fmt = "yuv420p"
        vout.codec_context.time_base = Fraction(1, 1000) if not vin.time_base else vin.time_base
        vout.options = {"crf": "18", "preset": "veryfast"}
        aout = resampler = None
        if ain is not None:
            rate_a = ain.codec_context.sample_rate
            aout = outc.add_stream("aac", rate=rate_a)
            aout.codec_context.layout = "stereo" if ain.codec_context.layout.nb_channels != 1 else "mono"
            resampler = av.AudioResampler(format="fltp", layout=aout.codec_context.layout.name, rate=rate_a)
        first, last, frames = None, start_s, 0
        audio_next = None                  # the next audio sample position (output time base)
        streams = [vin] + ([ain] if ain is not None else [])
        video_done = False
        for packet in container.demux(streams):
            budget.check()
            if packet.stream is vin:
                if video_done:
                    continue
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * frame.time_base)
                    if t < start_s - 1e-6:
                        continue
                    if t >= end_s - 1e-6:
                        video_done = True
                        break
                    if first is None:
                        first = t
                    img = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                    img.pts = int(round((t - first) / vout.codec_context.time_base))
                    img.time_base = vout.codec_context.time_base
                    for p in vout.encode(img):
                        outc.mux(p)
                    frames += 1
                    dur = _seconds(frame.duration, frame.time_base) if getattr(frame, "duration", None) else None
                    last = max(last, t + (dur or float(1 / rate)))
            elif aout is not None:
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * frame.time_base)
                    if t + frame.samples / frame.sample_rate <= start_s or t >= end_s:
                        continue
                    for rf in resampler.resample(frame):
                        if audio_next is None:
                            audio_next = max(0, int(round((t - start_s) * rf.sample_rate)))
                        rf.pts, rf.time_base = audio_next, Fraction(1, rf.sample_rate)
                        audio_next += rf.samples
                        for p in aout.encode(rf):
                            outc.mux(p)
            if video_done and (aout is None or (audio_next is not None and
                                                audio_next / aout.codec_context.sample_rate >= end_s - start_s)):
                break
        for p in vout.encode(None):
            outc.mux(p)
        if aout is not None:
            for p in aout.encode(None):
                outc.mux(p)
        return (first if first is not None else start_s), min(last, end_s), frames
    finally:
        outc.close()
