"""The in-process CPU decoder (PyAV, which bundles its own FFmpeg libraries): decode only what is sampled.

- ``probe``: opens the file (allowed demuxers and the ``file`` protocol only), indexes the video stream's
  packets (``frameindex``: real timestamps, keyframes, true frame count) and decodes the first frame (its
  display rotation, and proof that the stream decodes).
- ``frames``: GOP-aware. For each target frame it seeks to the keyframe before it, unless sequential
  decoding from where it is reaches it sooner; it decodes only as far as the last target of that GOP and
  skips GOPs that hold no target. Packets of frames nobody asked for are sent with ``skip_frame=NONREF``,
  so H.264/HEVC non-reference pictures among them are not decoded at all; reference pictures are, so
  every returned frame is identical to a full sequential decode at the same number. Only kept frames are
  converted to RGB and resized (swscale, bicubic). ``keyframes_only``: ``skip_frame=NONKEY``.
- Corrupt data: packets the decoder rejects and frames it flags corrupt are counted in the
  ``DecodeReport`` (becoming the clip's ``warnings``, or an error past a threshold).
- Time: the ``Budget`` is checked between packets; PyAV's I/O timeout interrupts a blocked read.
- Byte sources (``types.ByteSource``, e.g. an object in a bucket): opened from the source's file object
  through PyAV's Python I/O, with the same demuxer whitelist and no protocol at all (a nested open of any
  other file or URL is refused); the source bounds how long one of its reads may block.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from fractions import Fraction
from typing import Iterator

import numpy as np

from .base import DecodeReport, Decoder
from .frameindex import MAX_FRAMES, FrameIndex, from_packets
from .types import (DEMUXERS, PROTOCOLS, REFUSED_FORMAT, Budget, ByteSource, VideoError, VideoInfo,
                    check_input, file_url, input_name)

log = logging.getLogger("engine.video")

#: Seconds a single read may block before PyAV's interrupt callback gives up (a hung network mount).
READ_TIMEOUT_S = 60.0
#: Indexes kept per process (probe then decode of the same file reuse it).
_CACHE_SIZE = 8
_cache: "OrderedDict[tuple, FrameIndex]" = OrderedDict()
_END = object()
_quiet = False


def _key(path):
    if isinstance(path, ByteSource):
        return ("source", path.name, path.size, path.identity)
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


#: Protocols a byte source's container may open besides its own file object: none (the name is no protocol).
NO_PROTOCOL = "bike-none"


def open_container(path, hwaccel=None, timeout_s: float = READ_TIMEOUT_S):
    """``av.open`` restricted to single-file demuxers and the file protocol (a ``ByteSource``: its file
    object, no protocol); errors -> ``VideoError``."""
    import av
    source = isinstance(path, ByteSource)
    opts = {"format_whitelist": ",".join(DEMUXERS),
            "protocol_whitelist": NO_PROTOCOL if source else ",".join(PROTOCOLS)}
    try:
        kw = {"hwaccel": hwaccel} if hwaccel is not None else {}
        return _logged_open(av, path.open() if source else file_url(path), container_options=opts,
                            timeout=(timeout_s, timeout_s), metadata_errors="replace", **kw)
    except (UnicodeError, OverflowError, MemoryError) as e:      # a damaged header PyAV cannot represent
        raise VideoError(input_name(path), f"corrupt or truncated: unreadable header ({type(e).__name__})") from None
    except av.error.FFmpegError as e:
        if source and path.failure:
            raise VideoError(path.name, path.failure) from None
        text = str(e).replace("; last error log: ", "\n")
        text += "\n" + _open_diagnosis(path, timeout_s)
        if "moov atom not found" in text and not _looks_like_mp4(path):
            text = "Invalid data found when processing input"     # chosen by the .mp4 name only
        raise VideoError(input_name(path), _reason(text, e)) from None


def _looks_like_mp4(path) -> bool:
    """Whether the file starts with an ISO-BMFF box (``ftyp``, ``moov``, ``mdat``, ...)."""
    try:
        with (path.open() if isinstance(path, ByteSource) else open(path, "rb")) as f:
            head = f.read(8)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp")


def quiet_ffmpeg_logs() -> None:
    """Route FFmpeg's log to PyAV's no-op C callback, once per process (before the first open).

    PyAV's Python log callback must take the GIL inside FFmpeg's own threads; a frame thread logging a
    decode error then waits for the GIL while the thread holding it waits for that frame thread (freeing
    a codec context joins its threads): every thread of the process hangs, signals included. So the
    callback is never installed (PyAV's own default; this makes sure of it once), and nothing changes
    FFmpeg's process-wide log state per call. Why an open failed comes from the ffmpeg command line
    instead (:func:`_open_diagnosis`)."""
    global _quiet
    if not _quiet:
        import av.logging
        av.logging.set_level(None)
        _quiet = True


def _logged_open(av, *args, **kw):
    """``av.open``; FFmpeg's log stays off (:func:`quiet_ffmpeg_logs`), so a failure carries only FFmpeg's
    error code, and :func:`open_container` asks the ffmpeg command line for the reason."""
    quiet_ffmpeg_logs()
    return av.open(*args, **kw)


def _open_diagnosis(path, timeout_s: float) -> str:
    """What ``ffmpeg -i`` prints when it opens ``path`` (with the same demuxer/protocol whitelists), for
    the reason of a failed PyAV open: "moov atom not found", "EBML header parsing failed", "not on
    whitelist"... A separate process, so no log callback runs in this one. '' when not available (a byte
    source, no ffmpeg binary, or it took longer than ``timeout_s``)."""
    if isinstance(path, ByteSource):
        return ""
    import subprocess

    from .ffmpeg_cli import _input_guard, ffmpeg_exe
    try:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", *_input_guard(),
                              "-i", file_url(path)], stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=max(1.0, min(timeout_s, 10.0)))
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return ""
    return out.stderr.decode("utf-8", "replace")[-4000:]


def _reason(text: str, e) -> str:
    from .ffmpeg_cli import open_error
    if "whitelist" in text:
        return REFUSED_FORMAT
    if "Permission denied" in text:
        return "permission denied"
    if "Invalid data found" in text and not any(s in text for s in ("moov atom", "EBML", "partial file",
                                                                     "Truncat")):
        return "not a video: ffmpeg recognises no audio/video format in it"
    if "Immediate exit requested" in text or "Exit requested" in text:
        return "reading the file timed out"
    return open_error(text)


def video_stream(container, path: str):
    """The first video stream that is not an attached picture (cover art)."""
    for s in container.streams.video:
        if s.codec_context is None:
            raise VideoError(path, "no decoder for this video stream's codec")
        disp = getattr(s, "disposition", 0)
        if "attached_pic" in str(disp).lower() or "timed_thumbnails" in str(disp).lower():
            continue
        return s
    raise VideoError(path, "no video stream (audio only or no streams)")


def _rate(stream) -> float:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r and 0 < float(r) <= 1000:
            return float(r)
    return 0.0


def index_packets(container, stream, path: str, budget: "Budget | None", first_frame: bool = False):
    """Demux every packet of ``stream`` (decoding at most the first frame) -> (FrameIndex, first frame)."""
    import av
    pts, keys, durs = [], [], []
    frame = None
    truncated = truncated_tail = False
    cc = stream.codec_context
    try:
        for i, p in enumerate(container.demux(stream)):
            if p.size == 0 or p.is_discard:
                continue
            if p.is_corrupt:                  # a packet cut by the end of the file: the stream ends here
                truncated_tail = True
                break
            if budget is not None and i % 256 == 0:
                budget.check()
            pts.append(p.pts if p.pts is not None else p.dts)
            keys.append(bool(p.is_keyframe))
            durs.append(p.duration or 0)
            if first_frame and frame is None:
                try:
                    got = cc.decode(p)
                except av.error.FFmpegError:
                    got = []
                if got:
                    frame = got[0]
            if len(pts) >= MAX_FRAMES:
                truncated = True
                log.warning("%s: more than %d frames; indexing stops there", path, MAX_FRAMES)
                break
    except av.error.FFmpegError:
        pass                                  # a truncated or damaged tail: index what is there
    if first_frame and frame is None and pts:
        try:
            got = cc.decode(None)
            frame = got[0] if got else None
        except av.error.FFmpegError:
            pass
    if truncated_tail:
        log.warning("%s: the file ends inside a packet (truncated); %d frames indexed", path, len(pts))
    index = from_packets(pts, keys, durs, stream.time_base, _rate(stream), truncated)
    return index, frame


def cached_index(path: str, info: VideoInfo, budget: Budget) -> FrameIndex:
    """The frame index of ``path`` (from the probe when it ran in this process, else a demux pass)."""
    key = _key(path)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    with open_container(path, timeout_s=_read_timeout(budget)) as c:
        index, _ = index_packets(c, video_stream(c, path), path, budget)
    _remember(key, index)
    return index


def _read_timeout(budget: Budget) -> float:
    """PyAV's interrupt timeout for one demux/seek call: what is left of the budget (a demuxer looping
    inside FFmpeg on a crafted file is interrupted there), at most ``READ_TIMEOUT_S``."""
    return max(0.5, min(READ_TIMEOUT_S, budget.timeout_s - budget.active_s()))


def _remember(key, index) -> None:
    _cache[key] = index
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)


def _rotation_cw(frame) -> int:
    """Clockwise display rotation of a decoded frame (PyAV reports the counter-clockwise angle)."""
    try:
        ccw = float(frame.rotation or 0)
    except Exception:  # noqa: BLE001 - no display matrix
        return 0
    return int(round(-ccw / 90.0)) * 90 % 360


def _safe_demux(container, stream, report: DecodeReport):
    """``container.demux(stream)`` that ends (with a final None: drain the decoder) instead of raising when
    the file is damaged or cut; the problem goes into the report."""
    import av
    it = container.demux(stream)
    while True:
        try:
            p = next(it)
        except StopIteration:
            return
        except av.error.FFmpegError as e:
            report.damaged += 1
            report.warn(f"demuxer stopped early: {str(e).split(';')[0].strip()}")
            yield None
            return
        yield p


class PyAVDecoder(Decoder):
    name = "pyav"
    device = "cpu"
    reads_sources = True
    hwaccel = None

    def unavailable(self):
        try:
            import av  # noqa: F401
        except ImportError as e:
            return f"PyAV is not installed ({e}): pip install av"
        return None

    # ------------------------------------------------------------------------------------------ probe
    def probe(self, path, timeout_s: float = 30.0) -> VideoInfo:
        path = path if isinstance(path, ByteSource) else str(path)
        size = check_input(path)
        budget = Budget(input_name(path), timeout_s, "probing")
        with open_container(path, timeout_s=min(timeout_s, READ_TIMEOUT_S)) as c:
            s = video_stream(c, path)
            cc = s.codec_context
            width, height, codec = cc.width, cc.height, cc.name or "unknown"
            if width <= 0 or height <= 0:
                raise VideoError(path, f"video stream has no frame size (codec {codec})")
            cc.thread_count = 1
            index, first = index_packets(c, s, path, budget, first_frame=True)
            fps = _rate(s)
            claimed = float(s.duration * s.time_base) if s.duration else (c.duration or 0) / 1e6
            rotation = _rotation_cw(first) if first is not None else 0
            first_ok = first is not None
        if len(index) == 0:
            if claimed > 0:
                raise VideoError(path, f"corrupt or truncated: the header promises {claimed:g} s of video "
                                       "but the file holds no frame")
            raise VideoError(path, "zero duration: the video stream holds no frames")
        if not first_ok:
            raise VideoError(path, "corrupt or truncated: no frame could be decoded")
        _remember(_key(path), index)
        if fps <= 0:
            fps = len(index) / index.duration_s if index.duration_s > 0 else 0.0
        if fps <= 0:
            raise VideoError(path, "unknown frame rate")
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(path=input_name(path), size_bytes=size, duration_s=index.duration_s, fps=fps,
                         num_frames=len(index), width=width, height=height, rotation=rotation, codec=codec)

    # ------------------------------------------------------------------------------------------ frames
    def _open_for_decode(self, path: str, threads: "int | None", timeout_s: float = READ_TIMEOUT_S):
        c = open_container(path, hwaccel=self.hwaccel, timeout_s=timeout_s)
        s = video_stream(c, path)
        s.thread_type = "AUTO"
        s.codec_context.thread_count = threads or 0
        return c, s

    def _to_rgb(self, frame, width: int, height: int, rotation: int) -> np.ndarray:
        w, h = (height, width) if rotation in (90, 270) else (width, height)
        img = frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
        if rotation:
            img = np.ascontiguousarray(np.rot90(img, k={90: -1, 180: 2, 270: 1}[rotation]))
        return img

    def frames(self, path: str, numbers, width: int, height: int, info: VideoInfo, index: FrameIndex,
               budget: Budget, threads, report: DecodeReport, keyframes_only: bool = False
               ) -> Iterator[tuple[int, np.ndarray]]:
        import av
        targets = [int(n) for n in numbers]
        if not targets:
            return
        wanted_pts = {int(index.pts[n]) for n in targets}
        c, s = self._open_for_decode(path, threads, _read_timeout(budget))
        cc = s.codec_context
        skip_default = "NONKEY" if keyframes_only else "DEFAULT"
        try:
            i, pos, demux, seek_from, start_k, fresh = 0, -1, None, None, 0, False
            jumps, max_jumps = 0, 2 * len(targets) + 8
            while i < len(targets):
                budget.check()
                k = index.keyframe_before(targets[i]) if seek_from is None else seek_from
                if demux is None or seek_from is not None or k > pos + 1:   # the target's GOP is not next
                    jumps += 1
                    if jumps > max_jumps:             # a damaged index sends the decoder in circles
                        raise VideoError(path, "corrupt: the decoder cannot reach the sampled frames "
                                               f"({jumps} seeks for {len(targets)} frames)")
                    if demux is not None or k > 0:
                        try:
                            c.seek(int(index.pts[k]), stream=s, backward=True, any_frame=False)
                            cc.flush_buffers()
                        except av.error.FFmpegError as e:    # a damaged index: decode from the start
                            report.warn(f"seek failed ({str(e).split(';')[0]}); decoding from the start")
                            c.close()
                            c, s = self._open_for_decode(path, threads, _read_timeout(budget))
                            cc, k = s.codec_context, 0
                    demux, pos, seek_from, start_k, fresh = _safe_demux(c, s, report), k - 1, None, k, True
                packet = _END
                for packet in demux:
                    budget.check()
                    if packet is None or packet.size == 0:
                        packet = None                     # end of stream: drain the decoder
                    else:
                        cc.skip_frame = skip_default if packet.pts in wanted_pts else (
                            "NONKEY" if keyframes_only else "NONREF")
                    drained = False
                    try:
                        out = cc.decode(packet)
                        if keyframes_only and packet is not None and packet.pts in wanted_pts and not out:
                            out, drained = cc.decode(None), True   # do not wait for the next GOP's keyframe
                    except av.error.FFmpegError as e:
                        report.damaged += 1
                        report.warn(f"decoder rejected a packet: {str(e).split(';')[-1].strip()}")
                        out = []
                    for f in out:
                        n = index.number_of(f.pts) if f.pts is not None else -1
                        report.decoded += 1
                        if f.is_corrupt:
                            report.damaged += 1
                            report.warn(f"frame {n} decoded with errors (concealed)")
                        if n <= pos:
                            continue                      # leading frames of an open GOP, or a repeat
                        if fresh and n > targets[i] and start_k > 0:
                            seek_from = index.keyframe_before(start_k - 1)   # the seek overshot
                            break
                        pos, fresh = n, False
                        while i < len(targets) and targets[i] < n:
                            i += 1                        # the decoder never output it (damaged)
                        if i < len(targets) and targets[i] == n:
                            yield n, self._to_rgb(f, width, height, info.rotation)
                            i += 1
                    if drained and seek_from is None and i < len(targets):
                        seek_from = index.keyframe_before(targets[i])   # a drained decoder restarts by a seek
                        jumps -= 1                                       # (a planned jump, not a retry)
                    if seek_from is not None or i >= len(targets) or packet is None:
                        break
                    if index.keyframe_before(targets[i]) > pos + 1:
                        break                             # the next target lies in a later GOP
                if seek_from is None and (packet is None or packet is _END):
                    break                                 # the stream is over
        finally:
            c.close()
