"""Reading videos for the model: probe a file, then decode only the frames the sampler needs.

Everything goes through one ``ffmpeg`` binary (see ``ffmpeg_exe``); ffprobe is not needed.

- ``probe(path)`` runs ``ffmpeg -i PATH`` and parses the header ffmpeg prints: duration, frame rate,
  displayed size, rotation, codec -> ``VideoInfo``.
- ``iter_clips(path, ...)`` cuts the video into time windows (``engine.sampling.windows``), picks T
  frame numbers per window (``engine.sampling.segment_indices``), and starts ONE ffmpeg process whose
  ``select`` filter lets only those frames through and whose ``scale`` filter resizes them (short
  side = ``resize``, bicubic) before they reach the rawvideo pipe. Frames are read one at a time and
  a ``Clip`` is yielded as soon as its window is complete, so memory stays bounded on a 1-hour or 4K
  file. Crops are cut in numpy.
- ``read_video(path, ...)`` is ``iter_clips`` with one window covering the whole video.

Every problem with the input (missing, unreadable, empty, not a video, no video stream, truncated,
too slow to decode) raises ``VideoError`` with the path and a short human reason; ffmpeg is always
killed on the way out, so a bad file never hangs the caller.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import ffmpeg  # ffmpeg-python: builds the command line, we run it ourselves
import numpy as np

from .sampling import crop_boxes, segment_indices, view_offsets, windows

log = logging.getLogger(__name__)

#: Kill ffmpeg when it used no CPU and sent no frame for this many seconds (a hung read).
STALL_S = 60.0
#: Longer select expressions go through a file instead of the command line (Linux caps one
#: argument at 128 KiB).
INLINE_FILTER_MAX = 100_000
#: Frame numbers per leaf of the select expression's binary tree.
_SELECT_LEAF = 16


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
    """What ``probe`` learnt from the file's header.

    ``width``/``height`` are as displayed (already swapped for a ±90° rotation, which ffmpeg
    applies while decoding). ``rotation`` is the clockwise display rotation in degrees (0, 90,
    180, 270; the convention of the old ``rotate`` tag). ``num_frames`` is an ESTIMATE,
    ``round(duration_s * fps)`` (exact only when the header had no duration and probe counted
    the frames); the decoder copes when the stream holds fewer frames.
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

    ``index`` is the window number (0, 1, ... in time order), ``start_s``/``end_s`` its span in
    seconds. ``frames`` is uint8 (V, T, S, S, 3) RGB with V = clips * crops views, ordered
    clip-major (view = clip * crops + crop). ``frame_times`` holds the T times in seconds from the
    start of the video of the frames of the first temporal view (the only one when clips=1):
    ``frame_number / fps``.
    """

    index: int
    start_s: float
    end_s: float
    frame_times: list[float]
    frames: np.ndarray  # (V, T, S, S, 3) uint8


# --------------------------------------------------------------------------- ffmpeg binary


def ffmpeg_exe() -> str:
    """The ffmpeg binary: ``$BIKE_FFMPEG``, else ``ffmpeg`` on PATH, else the static build that the
    ``imageio-ffmpeg`` package ships (so a fresh ``pip install`` is enough)."""
    exe = os.environ.get("BIKE_FFMPEG") or shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
    except ImportError:
        raise RuntimeError(
            "no ffmpeg found: install one (`pip install imageio-ffmpeg` or `apt-get install ffmpeg`)"
            " or point $BIKE_FFMPEG at the binary"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@lru_cache(maxsize=8)
def _ffmpeg_major(exe: str) -> int:
    """Major version of an ffmpeg binary (99 for git builds, whose version string has none)."""
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 99
    m = re.search(r"ffmpeg version n?(\d+)\.", out)
    return int(m.group(1)) if m else 99


def decode_timeout(duration_s: float) -> float:
    """Default wall-clock limit for decoding one video: 30 s + 2 s per second of video.

    Generous (a 1-hour 1080p file decodes in a few minutes on one core) but finite, so one bad
    file cannot hold a worker forever. Only time spent inside the reader counts, not the time the
    caller spends between clips.
    """
    return 30.0 + 2.0 * max(float(duration_s), 0.0)


# --------------------------------------------------------------------------- running ffmpeg


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by a process, from /proc; None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class _FFmpegRun:
    """One ffmpeg child process with a time budget, a stall guard and a drained stderr.

    A watchdog thread kills the process (its whole process group) when the active time exceeds
    ``timeout_s`` or when it made no progress (no CPU used, no output read) for ``STALL_S``;
    ``killed`` then holds the reason. ``pause()``/``resume()`` stop the clock while the caller
    holds a yielded clip. A reader thread keeps the last stderr lines in ``stderr``.
    """

    def __init__(self, args: list[str], timeout_s: float, what: str, keep_lines: int = 200):
        self.timeout_s = timeout_s
        self.what = what
        self.killed: str | None = None
        self.stderr: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self._lock = threading.Lock()
        self._used = 0.0  # active seconds before the current run of activity
        self._since: float | None = time.monotonic()  # None while paused
        self._progress_at = time.monotonic()
        self._cpu = 0.0
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # own process group: kill() reaches any child too
            )
        except OSError as e:
            raise RuntimeError(f"cannot run ffmpeg ({args[0]}): {e}; set $BIKE_FFMPEG or "
                               "install imageio-ffmpeg") from None
        self._threads = [
            threading.Thread(target=self._drain_stderr, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- clock
    def pause(self) -> None:
        with self._lock:
            if self._since is not None:
                self._used += time.monotonic() - self._since
                self._since = None

    def resume(self) -> None:
        with self._lock:
            self._since = self._progress_at = time.monotonic()

    def progressed(self) -> None:
        """The caller got output: not a stall."""
        self._progress_at = time.monotonic()

    def over_time(self) -> bool:
        """Check the budget now (the watchdog only looks every 50 ms); kill when it is spent."""
        active = self._active_s()
        if active is not None and active > self.timeout_s:
            self.kill(f"{self.what} took longer than {self.timeout_s:g} s")
        return self.killed is not None

    def _active_s(self) -> float | None:
        with self._lock:
            if self._since is None:
                return None
            return self._used + time.monotonic() - self._since

    # -- threads
    def _drain_stderr(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()  # keep the indent: probe parses it
            if line.strip():
                self.stderr.append(line)

    def _watch(self) -> None:
        while self.proc.poll() is None:
            time.sleep(0.05)
            if self._active_s() is None:  # paused
                continue
            if self.over_time():
                return
            cpu = _cpu_seconds(self.proc.pid)
            if cpu is not None and cpu > self._cpu + 0.01:
                self._cpu = cpu
                self.progressed()
            elif cpu is not None and time.monotonic() - self._progress_at > STALL_S:
                self.kill(f"{self.what} stalled: ffmpeg made no progress for {STALL_S:g} s")
                return

    # -- ending
    def kill(self, reason: str | None = None) -> None:
        if reason and self.killed is None:
            self.killed = reason
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self) -> int:
        """Wait for the exit (the watchdog enforces the limit) and for stderr to be drained."""
        code = self.proc.wait()
        self._threads[0].join(timeout=5)
        return code

    def close(self) -> None:
        self.kill()
        self.proc.wait()
        self.proc.stdout.close()
        for t in self._threads:
            t.join(timeout=5)
        self.proc.stderr.close()

    def __enter__(self) -> "_FFmpegRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_GENERIC = re.compile(
    r"^(Conversion failed!|Error opening input files?\b.*\.$|Error opening output files?|"
    r"Exiting normally|At least one output file must be specified)"
)


def _last_meaningful(lines) -> str:
    """The last stderr line that says something specific, without ffmpeg's ``[ctx @ 0x..]`` tag."""
    for line in reversed(list(lines)):
        line = re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\]\s*", "", line.strip())
        if line and not _GENERIC.match(line):
            return line
    return ""


def _open_error(text: str) -> str:
    """A short reason for why ffmpeg could not open a file, from its stderr."""
    last = _last_meaningful(text.splitlines())
    if "No such file or directory" in text:
        return "file not found"
    if "Permission denied" in text:
        return "permission denied"
    if "misdetection possible" in text:
        return "not a video: ffmpeg recognises no audio/video format in it"
    for sign in ("moov atom not found", "EBML header parsing failed", "partial file", "Truncat"):
        if sign in text:
            return f"corrupt or truncated: {_last_meaningful([l for l in text.splitlines() if sign in l])}"
    if "Invalid data found when processing input" in text:
        return "not a video: ffmpeg recognises no audio/video format in it"
    return f"ffmpeg cannot open it: {last or 'no reason given'}"


# --------------------------------------------------------------------------- probe


def _check_file(path: str) -> int:
    """Fail early, with a plain reason, on what is not a readable non-empty file; return its size."""
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


def _ffmpeg_url(path: str) -> str:
    """``file:`` + absolute path, so ffmpeg never reads ``a:b.mp4`` as protocol ``a``."""
    return "file:" + os.path.abspath(path)


def _rate(text: str, unit: str) -> float | None:
    """'29.97 fps' -> 29.97, '30k tbr' -> 30000 (ffmpeg's notation), None when absent."""
    m = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", text)
    if not m:
        return None
    return float(m.group(1)) * (1000 if m.group(2) else 1)


def _snap_ntsc(fps: float) -> float:
    """ffmpeg prints 30000/1001 as '29.97'; give back the exact NTSC rate (k * 1000/1001)."""
    k = round(fps * 1.001)
    if k and abs(fps - k / 1.001) < 0.006 and abs(fps - k) > 0.006:
        return k * 1000 / 1001
    return fps


@dataclass
class _Header:
    duration_s: float | None
    codec: str
    width: int
    height: int
    fps: float | None
    rotation: int


def _parse_header(text: str) -> _Header | None:
    """Parse ``ffmpeg -i`` output: container duration + the first real video stream (not cover art).

    Returns None when the file has no video stream. fps: the stream's ``fps`` (average rate),
    else its ``tbr``.
    """
    m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None
    stream = _first_video_stream(text.splitlines())
    if stream is None:
        return None
    desc, details = stream
    size = re.search(r"(?<![\w.])([1-9]\d{0,5})x([1-9]\d{0,5})(?![\w])", desc)  # not 0x31637661
    width, height = (int(size.group(1)), int(size.group(2))) if size else (0, 0)
    fps = _rate(desc, "fps")
    if not fps or fps > 1000:
        fps = _rate(desc, "tbr")
    rotation = _rotation_cw(details)
    if rotation in (90, 270):
        width, height = height, width
    codec = desc.split()[0].rstrip(",") if desc.split() else "unknown"
    return _Header(duration, codec, width, height, fps if fps and fps <= 1000 else None, rotation)


def _first_video_stream(lines: list[str]) -> tuple[str, str] | None:
    """(description, indented metadata/side-data text) of the first video stream of input 0 that is
    not an attached picture (cover art) or a thumbnail track."""
    stream_re = re.compile(r"^\s*Stream #0:\d+\S*: (\w+): (.*)$")
    for i, line in enumerate(lines):
        m = stream_re.match(line)
        if not m or m.group(1) != "Video":
            continue
        desc = m.group(2)
        if "(attached pic)" in desc or "(timed thumbnails)" in desc:
            continue
        details = []
        for nxt in lines[i + 1:]:  # deeper-indented lines, up to the next stream
            if not nxt.startswith("    ") or nxt.lstrip().startswith("Stream #"):
                break
            details.append(nxt)
        return desc, "\n".join(details)
    return None


def _rotation_cw(details: str) -> int:
    """Clockwise display rotation in [0, 360) from a stream's ``displaymatrix: rotation of X
    degrees`` side data (counter-clockwise X; ffmpeg 9 writes ``Display Matrix``) or, in older
    files and ffmpeg builds, its ``rotate : 90`` tag (already clockwise)."""
    m = re.search(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", details, re.I)
    if m:
        return int(round(-float(m.group(1)))) % 360
    m = re.search(r"^\s*rotate\s*:\s*(-?\d+(?:\.\d+)?)", details, re.M)
    return int(round(float(m.group(1)))) % 360 if m else 0


def _count_frames(path: str, timeout_s: float) -> int:
    """Count video frames by demuxing without decoding (``-c copy -f null``); for files whose
    header has no duration (live-recorded WebM, a still image)."""
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-i", _ffmpeg_url(path),
            "-map", "0:V:0", "-c", "copy", "-f", "null", "-"]
    with _FFmpegRun(args, timeout_s, "counting frames") as run:
        run.wait()
    if run.killed:
        raise VideoError(path, run.killed)
    counts = re.findall(r"frame=\s*(\d+)", "\n".join(run.stderr))
    return int(counts[-1]) if counts else 0


def probe(path, timeout_s: float = 30.0) -> VideoInfo:
    """Read a video's header with ``ffmpeg -hide_banner -i PATH`` (no ffprobe needed).

    Raises ``VideoError`` for: missing file, directory or other non-file, no read permission, empty
    file, not a video, no video stream, corrupt/truncated header, zero duration, unknown frame rate,
    or ffmpeg taking longer than ``timeout_s``. When the header has no duration, the frames are
    counted by demuxing the file (fast, no decoding).
    """
    path = str(path)
    size = _check_file(path)
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", _ffmpeg_url(path)]
    with _FFmpegRun(args, timeout_s, "probing", keep_lines=5000) as run:
        run.wait()
    if run.killed:
        raise VideoError(path, run.killed)
    text = "\n".join(run.stderr)
    if "Input #0" not in text:
        raise VideoError(path, _open_error(text))
    head = _parse_header(text)
    if head is None:
        raise VideoError(path, "no video stream (audio only or no streams)")
    if head.width <= 0 or head.height <= 0:
        raise VideoError(path, f"video stream has no frame size (codec {head.codec})")

    num_frames = None
    if head.duration_s is None or head.duration_s <= 0:
        num_frames = _count_frames(path, timeout_s)
        if num_frames == 0:
            raise VideoError(path, "zero duration: the video stream holds no frames")
    if head.fps is None:
        raise VideoError(path, "unknown frame rate")
    fps = _snap_ntsc(head.fps)
    if num_frames is None:
        duration = head.duration_s
        num_frames = max(1, round(duration * fps))
    else:
        duration = num_frames / fps
    return VideoInfo(path=path, size_bytes=size, duration_s=duration, fps=fps,
                     num_frames=num_frames, width=head.width, height=head.height,
                     rotation=head.rotation, codec=head.codec)


# --------------------------------------------------------------------------- sampling plan


@dataclass
class _Window:
    index: int
    start_s: float
    end_s: float
    numbers: list[list[int]]  # (clips, T) frame numbers to sample


def _plan(info: VideoInfo, frames: int, window_s: float | None, clips: int) -> list[_Window]:
    """Frame numbers per window: window k holds the frames f with start_s*fps <= f < end_s*fps
    (and f < num_frames); view c samples ``first + segment_indices(n, T, offset_c)``."""
    plan = []
    eps = 1e-6  # 10 s * 25 fps must be frame 250, not 251
    for k, (start, end) in enumerate(windows(info.duration_s, window_s)):
        first = math.ceil(start * info.fps - eps)
        stop = min(math.ceil(end * info.fps - eps), info.num_frames)
        n = stop - first
        if n <= 0:
            continue
        numbers = [[first + i for i in segment_indices(n, frames, off)]
                   for off in view_offsets(n, frames, clips)]
        plan.append(_Window(k, start, end, numbers))
    return plan


def _select_expr(numbers: list[int]) -> str:
    """An ffmpeg expression that is true exactly for the sorted frame ``numbers``: a balanced
    ``if(lt(n,m), left, right)`` tree (ffmpeg evaluates only the taken branch) over leaves of
    ``eq(n,a)+eq(n,b)+...``, so each decoded frame costs O(log len) comparisons."""
    if len(numbers) <= _SELECT_LEAF:
        return "+".join(f"eq(n,{f})" for f in numbers)
    mid = len(numbers) // 2
    return (f"if(lt(n,{numbers[mid]}),{_select_expr(numbers[:mid])},"
            f"{_select_expr(numbers[mid:])})")


def _resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(w, h) with the short side = ``resize`` and the aspect kept; the long side rounded to even."""
    if width <= height:
        return resize, max(resize, 2 * round(height * resize / width / 2))
    return max(resize, 2 * round(width * resize / height / 2)), resize


def _decode_args(path: str, numbers: "list[int] | None", out_w: int, out_h: int,
                 threads: int | None, script_dir: str) -> list[str]:
    """The ffmpeg command: first real video stream -> select(numbers) -> bicubic scale -> rgb24 pipe.
    A select expression too long for the command line goes through a filter-graph file."""
    in_kwargs = {"threads": threads} if threads else {}
    stream = ffmpeg.input(_ffmpeg_url(path), **in_kwargs)["V:0"]
    if numbers is not None:                                    # None: every frame
        stream = stream.filter("select", _select_expr(numbers))
    stream = stream.filter("scale", out_w, out_h, flags="bicubic")
    out = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    exe = ffmpeg_exe()
    args = [exe, "-nostdin", "-nostats", "-loglevel", "error"] + out.get_args()
    i = args.index("-filter_complex")
    if len(args[i + 1]) > INLINE_FILTER_MAX:
        script = os.path.join(script_dir, "select.ffgraph")
        with open(script, "w") as f:
            f.write(args[i + 1])
        # ffmpeg >= 7 reads any option's value from a file with "-/opt"; older ones need *_script
        opt = "-/filter_complex" if _ffmpeg_major(exe) >= 7 else "-filter_complex_script"
        args[i:i + 2] = [opt, script]
    return args


# --------------------------------------------------------------------------- decoding


def _read_numbered(run: _FFmpegRun, numbers: list[int], w: int, h: int):
    """Yield ``(frame_number, frame (h, w, 3) uint8)`` for each frame the pipe delivers; the i-th
    frame out of ffmpeg is ``numbers[i]`` because ``select`` passed exactly those, in order."""
    nbytes = w * h * 3
    for number in numbers:
        buf = run.proc.stdout.read(nbytes)
        if run.over_time() or len(buf) < nbytes:
            return  # end of stream, or killed: the caller checks run.killed
        run.progressed()
        yield number, np.frombuffer(buf, np.uint8).reshape(h, w, 3)


def iter_clips(path, frames: int = 8, window_s: float | None = None, size: int = 224,
               resize: int = 256, clips: int = 1, crops: int = 1,
               timeout_s: float | None = None, info: VideoInfo | None = None,
               threads: int | None = None) -> Iterator[Clip]:
    """Decode a video as consecutive time windows, one ``Clip`` of ``frames`` frames per window.

    ``window_s=None``: the whole video is one window. Each window's n frames are sampled with
    ``segment_indices(n, frames, offset)`` for ``clips`` offsets (``view_offsets``), resized so the
    short side is ``resize`` and cut into ``crops`` crops of ``size`` (1: centre; 3: along the long
    side) -> ``Clip.frames`` (clips*crops, frames, size, size, 3).

    One ffmpeg process decodes the file once, front to back; only the sampled frames leave it,
    already resized. It is killed as soon as the last needed frame arrives, when the caller stops
    iterating, or when decoding takes longer than ``timeout_s`` (default ``decode_timeout``;
    only time inside this generator counts) -> ``VideoError``, possibly after some clips were
    yielded. ``info`` skips the probe when the caller has one; ``threads`` caps ffmpeg's decoder
    threads (default: ffmpeg's choice, all cores).

    If the stream ends before a sampled frame (``num_frames`` is an estimate), that frame is
    replaced by the last frame that arrived, and its time by that frame's time, so ``frame_times``
    always describe the pixels; windows after the end get no clip. No frame at all -> VideoError.
    """
    path = str(path)
    if size > resize:
        raise ValueError(f"crop size {size} is larger than the resize {resize}")
    info = info or probe(path)
    plan = _plan(info, frames, window_s, clips)
    if not plan:
        raise VideoError(path, "zero duration: no frames to sample")
    needed = sorted({f for win in plan for row in win.numbers for f in row})
    out_w, out_h = _resized_size(info.width, info.height, resize)
    boxes = crop_boxes(out_h, out_w, size, crops)
    timeout_s = decode_timeout(info.duration_s) if timeout_s is None else timeout_s

    with tempfile.TemporaryDirectory(prefix="bike-ffmpeg-") as tmp:
        args = _decode_args(path, needed, out_w, out_h, threads, tmp)
        with _FFmpegRun(args, timeout_s, "decoding") as run:
            stream = _read_numbered(run, needed, out_w, out_h)
            remaining = len(needed)
            last = None  # (frame_number, frame) most recently received
            for win in plan:
                wanted = {f for row in win.numbers for f in row}
                got = dict(itertools.islice(stream, len(wanted)))
                if got:
                    last = max(got.items(), key=lambda kv: kv[0])
                remaining -= len(got)
                if run.killed:
                    raise VideoError(path, run.killed)
                if remaining == 0:
                    run.kill()  # everything needed is in: do not decode the rest of the file
                if last is None:
                    raise VideoError(path, _no_frames_reason(run))
                if not got:
                    break  # the stream ended before this window
                if len(got) < len(wanted):
                    log.warning("%s: stream ended at frame %d (header suggested %d frames); "
                                "window %d repeats it", path, last[0], info.num_frames, win.index)
                clip = _make_clip(win, got, last, boxes, size, info.fps)
                run.pause()
                yield clip
                run.resume()


def read_frames(path, numbers: "list[int] | None", width: int, height: int,
                timeout_s: float | None = None, info: VideoInfo | None = None) -> np.ndarray:
    """Frames ``numbers`` (sorted, unique; None = every frame) of the first video stream, scaled
    (bicubic) to exactly ``width`` × ``height`` -> uint8 (n, height, width, 3), in order.

    For callers that choose their own frames (training's random segment sampling). Same process,
    time limit (default ``decode_timeout``) and errors as :func:`iter_clips`; a stream that ends
    early gives fewer frames; no frame at all -> ``VideoError``.
    """
    path = str(path)
    info = info or probe(path)
    timeout_s = decode_timeout(info.duration_s) if timeout_s is None else timeout_s
    nbytes = width * height * 3
    out: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix="bike-ffmpeg-") as tmp:
        args = _decode_args(path, numbers, width, height, None, tmp)
        with _FFmpegRun(args, timeout_s, "decoding") as run:
            while numbers is None or len(out) < len(numbers):
                buf = run.proc.stdout.read(nbytes)
                if run.over_time() or len(buf) < nbytes:
                    break
                run.progressed()
                out.append(np.frombuffer(buf, np.uint8).reshape(height, width, 3))
            if run.killed:
                raise VideoError(path, run.killed)
            if not out:
                raise VideoError(path, _no_frames_reason(run))
    return np.stack(out)


def _no_frames_reason(run: _FFmpegRun) -> str:
    """Why not a single frame came out: ffmpeg's last error, or a header that promised frames."""
    code = run.wait()
    detail = _last_meaningful(run.stderr)
    if code != 0:
        return f"corrupt or truncated: no frame could be decoded ({detail or f'ffmpeg exit code {code}'})"
    return ("corrupt or truncated: no frame could be decoded "
            "(the stream holds fewer frames than its header says)")


def _make_clip(win: _Window, got: dict, last, boxes, size: int, fps: float) -> Clip:
    """Assemble (V, T, S, S, 3) from the window's frames; missing frames -> the last one received."""
    T = len(win.numbers[0])
    views = len(win.numbers) * len(boxes)
    out = np.empty((views, T, size, size, 3), np.uint8)
    times = []
    for c, row in enumerate(win.numbers):
        for t, number in enumerate(row):
            if number not in got:  # past the end of the stream
                number = last[0]
            img = got[number]  # (H, W, 3)
            for j, (y0, x0) in enumerate(boxes):
                out[c * len(boxes) + j, t] = img[y0:y0 + size, x0:x0 + size]
            if c == 0:
                times.append(number / fps)
    return Clip(index=win.index, start_s=win.start_s, end_s=win.end_s, frame_times=times, frames=out)


def read_video(path, frames: int = 8, size: int = 224, resize: int = 256, clips: int = 1,
               crops: int = 1, timeout_s: float | None = None,
               threads: int | None = None) -> Clip:
    """The whole video as ONE clip (one window), for classification and evaluation."""
    clips_out = list(iter_clips(path, frames=frames, window_s=None, size=size, resize=resize,
                                clips=clips, crops=crops, timeout_s=timeout_s, threads=threads))
    return clips_out[0]
