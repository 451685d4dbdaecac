"""What every decoder shares: the error type, the data it returns, the time budget, the input guard.

- ``VideoError``: the one error for input that cannot be read as a video (path + short reason).
- ``VideoInfo``: what ``probe`` learnt; ``Clip``: T sampled frames of one time window.
- ``Budget``: the per-video wall-clock limit, counting only time spent inside the decoder.
- ``check_file``: only non-empty regular files are opened (a FIFO, ``/dev/zero`` or a socket named
  ``x.mp4`` would block or never end).
- ``ByteSource``: a video that is not a local file (an object in a bucket): a name for messages, a size, an
  identity, and ``open()`` → a readable, seekable binary file object. The in-process decoders read it
  directly (``Decoder.reads_sources``); ``engine/sources/remote.py`` implements it with ranged reads. ``check_input``
  and ``input_name`` accept a path or a source.
- ``DEMUXERS``: the container formats a local file may be opened as. Formats that open OTHER files
  (HLS/DASH playlists, ``concat`` lists, image-sequence patterns, ``tee``...) are not in it, so a playlist
  saved as ``.mp4`` cannot make the decoder read a second local file.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

import numpy as np

#: Demuxers a local file may be opened as (FFmpeg's short names; ``mov`` covers mp4/m4v/3gp/mj2). Every one
#: reads only the file it is given. Not in it on purpose: hls, dash, concat, image2 (patterns), tee, data
#: URIs, and every device or network input.
DEMUXERS = ("mov", "matroska", "webm", "avi", "flv", "mpegts", "mpeg", "mpegvideo", "asf", "ogg", "h264",
            "hevc", "m4v", "mjpeg", "gif", "ivf", "obu", "nut", "mxf", "dv", "rm", "yuv4mpegpipe",
            "wtv", "vc1", "av1", "h263", "webp_pipe", "png_pipe", "jpeg_pipe", "mjpeg_2000", "bink",
            "smk", "nsv", "vob")
#: Protocols: a local file only.
PROTOCOLS = ("file",)

REFUSED_FORMAT = ("container format refused: bike opens only single-file video formats "
                  "(playlists such as HLS or DASH, concat lists and image sequences are not read)")


class VideoError(Exception):
    """The one error type for input that cannot be read as a video.

    ``path`` is the file, ``reason`` a short human sentence; ``str(e) == f"{path}: {reason}"``.
    Picklable, so it crosses process boundaries (Ray) intact.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learnt from the file.

    ``width``/``height`` are as displayed (already swapped for a ±90° rotation, which the decoders apply).
    ``rotation`` is the clockwise display rotation in degrees (0, 90, 180, 270). ``num_frames`` and
    ``duration_s`` are what the video stream really holds when the probe indexed its packets (the PyAV
    probe: a header that claims 5555 h over 6 KB of data gives the few seconds that are there), else the
    header's estimate ``round(duration_s * fps)`` (the ffmpeg-CLI probe; decoding copes with fewer frames).
    ``fps`` is the average rate; for a variable-frame-rate stream frame times come from the timestamps.
    """

    path: str
    size_bytes: int
    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    rotation: int
    codec: str


@dataclass
class Clip:
    """T sampled frames of one time window of one video, ready for the model.

    ``index`` is the window number (0, 1, ... in time order), ``start_s``/``end_s`` its span in seconds.
    ``frames`` is uint8 (V, T, S, S, 3) RGB with V = clips * crops views, ordered clip-major (view =
    clip * crops + crop). ``frame_times`` holds the T presentation times in seconds from the start of the
    video of the frames of the first temporal view (the frames' own timestamps, so they are right for
    variable-frame-rate video too). ``warnings``: decode problems met while decoding this window
    (corrupt data concealed by the decoder), empty when clean.
    """

    index: int
    start_s: float
    end_s: float
    frame_times: list[float]
    frames: np.ndarray  # (V, T, S, S, 3) uint8
    warnings: list[str] = field(default_factory=list)


def decode_timeout(duration_s: float) -> float:
    """Default wall-clock limit for decoding one video: 30 s + 2 s per second of video.

    Generous (a 1-hour 1080p file decodes in a few minutes on one core) but finite, so one bad file
    cannot hold a worker forever. Only time spent inside the reader counts, not the time the caller
    spends between clips.
    """
    return 30.0 + 2.0 * max(float(duration_s), 0.0)


class Budget:
    """Active-time clock of one decode: ``pause()`` while the caller holds a clip, ``resume()`` after.

    In-process decoders call ``check()`` between packets; a subprocess decoder registers its own
    pause/resume with ``on_pause``/``on_resume`` so its watchdog stops the clock too.
    """

    def __init__(self, path: str, timeout_s: float, what: str = "decoding"):
        self.path, self.timeout_s, self.what = path, timeout_s, what
        self._used = 0.0
        self._since: "float | None" = time.monotonic()
        self.listeners: list = []          # objects with pause() / resume()

    def active_s(self) -> float:
        return self._used + (time.monotonic() - self._since if self._since is not None else 0.0)

    def pause(self) -> None:
        if self._since is not None:
            self._used += time.monotonic() - self._since
            self._since = None
        for x in self.listeners:
            x.pause()

    def resume(self) -> None:
        if self._since is None:
            self._since = time.monotonic()
        for x in self.listeners:
            x.resume()

    def check(self) -> None:
        if self.active_s() > self.timeout_s:
            raise VideoError(self.path, f"{self.what} took longer than {self.timeout_s:g} s")


def check_file(path: str) -> int:
    """Fail early, with a plain reason, on what is not a readable non-empty regular file; its size.

    ``os.stat`` never opens the file, so a FIFO or a device is refused without blocking.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoError(path, "file not found") from None
    except PermissionError:
        raise VideoError(path, "permission denied") from None
    except OSError as e:
        raise VideoError(path, f"cannot access it: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoError(path, "is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise VideoError(path, "not a regular file (a pipe, socket or device)")
    if not os.access(path, os.R_OK):
        raise VideoError(path, "permission denied")
    if st.st_size == 0:
        raise VideoError(path, "empty file")
    return st.st_size


class ReadError(OSError):
    """A :class:`ByteSource`'s file object could not read (a connection lost for good, a read that stalled,
    the object changed or vanished); ``reason`` is the short sentence for the error row."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ByteSource:
    """A video behind a readable, seekable file object instead of a local path (docs/decoding.md "Byte sources").

    ``name``: what messages and ``VideoInfo.path`` show (a URL); ``size``: its length in bytes; ``identity``:
    a string that changes when the bytes do (an ETag), keying the per-process frame-index cache; ``open()``:
    a new binary file object positioned at 0 (``read``/``seek``/``tell``/``seekable``). A read that fails raises
    :class:`ReadError` and leaves its reason in ``failure``: the decoders check it, so a video whose bytes
    could not all be read is a ``VideoError`` with that reason, never a decode of the part that arrived.
    Each read must end on its own (an implementation bounds how long one may block).
    """

    name: str = "?"
    size: int = 0
    identity: str = ""
    failure: "str | None" = None

    def open(self):
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


def input_name(src) -> str:
    """The name messages use for a path or a :class:`ByteSource`."""
    return src.name if isinstance(src, ByteSource) else str(src)


def check_input(src) -> int:
    """``check_file`` for a path; for a :class:`ByteSource` its size (an empty one is refused) -> bytes."""
    if isinstance(src, ByteSource):
        check_source(src)
        if src.size <= 0:
            raise VideoError(src.name, "empty object")
        return src.size
    return check_file(str(src))


def check_source(src) -> None:
    """A :class:`ByteSource` whose reads failed ends the decode with that reason (no-op for a path)."""
    if isinstance(src, ByteSource) and src.failure:
        raise VideoError(src.name, src.failure)


def file_url(path: str) -> str:
    """``file:`` + absolute path, so FFmpeg never reads ``a:b.mp4`` as protocol ``a``."""
    return "file:" + os.path.abspath(path)
