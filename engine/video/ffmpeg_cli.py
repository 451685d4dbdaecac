"""The ffmpeg-CLI backend (the original decoder): one ``ffmpeg`` process per video, a ``select`` filter.

- ``probe`` runs ``ffmpeg -i PATH`` and parses the header it prints: duration, frame rate, displayed size,
  rotation, codec (no ffprobe needed).
- ``frames`` starts ONE ffmpeg process whose ``select`` filter lets only the wanted frame numbers through
  and whose ``scale`` filter resizes them (bicubic) before they reach the rawvideo pipe. ffmpeg decodes
  every frame of the file up to the last one needed (the slow part: see docs/decoding.md). With
  ``keyframes_only`` it adds ``-skip_frame nokey`` and selects among keyframes.

The command lines are built with ffmpeg-python's filter-graph API (``ffmpeg.input(...).filter(...).output(...)``
compiled to an argv; ffmpeg-python runs nothing: the processes, their watchdog and their pipes are this
module's). The binary is ``ffmpeg_exe()``. Inputs are restricted to single-file demuxers and the ``file`` protocol
(``-format_whitelist``/``-protocol_whitelist``). A watchdog kills ffmpeg past the time budget or when it
made no progress for ``STALL_S``; ffmpeg is always killed on the way out.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import ffmpeg  # ffmpeg-python: builds the command lines below from a filter graph (it runs nothing here)
import numpy as np

from .base import DecodeReport, Decoder
from .types import (DEMUXERS, PROTOCOLS, REFUSED_FORMAT, Budget, VideoError, VideoInfo, check_file,
                    file_url)

log = logging.getLogger(__name__)

#: Kill ffmpeg when it used no CPU and sent no frame for this many seconds (a hung read).
STALL_S = 60.0
#: Longer select expressions go through a file instead of the command line (Linux caps one
#: argument at 128 KiB).
INLINE_FILTER_MAX = 100_000
#: Frame numbers per leaf of the select expression's binary tree.
_SELECT_LEAF = 16


# --------------------------------------------------------------------------- ffmpeg binary


def ffmpeg_exe() -> str:
    """The ffmpeg binary: ``$BIKE_FFMPEG``, else ``ffmpeg`` on PATH, else the static build that the
    ``imageio-ffmpeg`` package ships (so a fresh ``pip install`` is enough)."""
    from engine.settings import Settings
    exe = Settings.from_env().ffmpeg or shutil.which("ffmpeg")
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


def open_error(text: str) -> str:
    """A short reason for why ffmpeg could not open a file, from its stderr (or FFmpeg's log)."""
    last = _last_meaningful(text.splitlines())
    if "whitelist" in text:
        return REFUSED_FORMAT
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
    video = _guarded_input(path)["V:0"]
    args = video.output("-", c="copy", format="null").compile(cmd=[ffmpeg_exe(), "-nostdin", "-hide_banner",
                                                                    "-nostats"])
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
    size = check_file(path)
    # ffmpeg-python compiles graphs with an output; probing needs the input half alone (``ffmpeg -i PATH``
    # prints the header, then stops: no output file)
    whole = _guarded_input(path).output("-").compile(cmd=[ffmpeg_exe(), "-nostdin", "-hide_banner"])
    args = whole[:whole.index("-i") + 2]
    with _FFmpegRun(args, timeout_s, "probing", keep_lines=5000) as run:
        run.wait()
    if run.killed:
        raise VideoError(path, run.killed)
    text = "\n".join(run.stderr)
    if "Input #0" not in text:
        raise VideoError(path, open_error(text))
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




def _input_guard() -> dict:
    """Input options: only single-file demuxers, only the file protocol (see ``types.DEMUXERS``)."""
    return {"format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": ",".join(PROTOCOLS)}


def _guarded_input(path: str, **options):
    """The ffmpeg-python input node of ``path`` (as a ``file:`` URL) with the input guard and ``options``
    (input options such as ``threads``, ``skip_frame``)."""
    return ffmpeg.input(file_url(path), **options, **_input_guard())


# --------------------------------------------------------------------------- decoding

#: Longer select expressions go through a file instead of the command line (Linux caps one
#: argument at 128 KiB).
INLINE_FILTER_MAX = 100_000
#: Frame numbers per leaf of the select expression's binary tree.
_SELECT_LEAF = 16


def _select_expr(numbers: list[int]) -> str:
    """An ffmpeg expression that is true exactly for the sorted frame ``numbers``: a balanced
    ``if(lt(n,m), left, right)`` tree (ffmpeg evaluates only the taken branch) over leaves of
    ``eq(n,a)+eq(n,b)+...``, so each decoded frame costs O(log len) comparisons."""
    if len(numbers) <= _SELECT_LEAF:
        return "+".join(f"eq(n,{f})" for f in numbers)
    mid = len(numbers) // 2
    return (f"if(lt(n,{numbers[mid]}),{_select_expr(numbers[:mid])},"
            f"{_select_expr(numbers[mid:])})")


def _decode_args(path: str, numbers: "list[int] | None", out_w: int, out_h: int,
                 threads: "int | None", script_dir: str, keyframes_only: bool = False) -> list[str]:
    """The ffmpeg command: first real video stream -> select(numbers) -> bicubic scale -> rgb24 pipe.
    A select expression too long for the command line goes through a filter-graph file."""
    exe = ffmpeg_exe()
    options = {}
    if threads:
        options["threads"] = threads
    if keyframes_only:
        options["skip_frame"] = "nokey"
    video = _guarded_input(path, **options)["V:0"]            # the first real video stream (no cover art)
    if numbers is not None:
        video = video.filter("select", _select_expr(numbers))
    video = video.filter("scale", out_w, out_h, flags="bicubic")
    args = video.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough").compile(
        cmd=[exe, "-nostdin", "-nostats", "-loglevel", "error"])
    at = args.index("-filter_complex")
    if len(args[at + 1]) > INLINE_FILTER_MAX:
        script = os.path.join(script_dir, "select.ffgraph")
        with open(script, "w") as f:
            f.write(args[at + 1])
        # ffmpeg >= 7 reads any option's value from a file with "-/opt"; older ones need *_script
        args[at:at + 2] = ["-/filter_complex" if _ffmpeg_major(exe) >= 7 else "-filter_complex_script", script]
    return args


def _stderr_problems(lines, seen: int, report: DecodeReport) -> int:
    """Count ffmpeg's decode-error lines (logged at level error) into the report; the new line count."""
    lines = list(lines)
    for line in lines[seen:]:
        report.damaged += 1
        report.warn(_last_meaningful([line]) or line.strip())
    return len(lines)


class FFmpegDecoder(Decoder):
    """The original path: one ffmpeg process per video, every frame decoded, ``select`` keeps the sampled."""

    name = "ffmpeg"
    device = "cpu"

    def unavailable(self):
        try:
            exe = ffmpeg_exe()
        except RuntimeError as e:
            return str(e)
        return None if os.path.exists(exe) or shutil.which(exe) else f"no ffmpeg binary at {exe}"

    def probe(self, path, timeout_s: float = 30.0) -> VideoInfo:
        """The header's facts, with the duration and frame count checked against the stream's packets: a
        header that claims far more than the file holds (a 6.8 KB file "lasting" 5555 h) is overruled."""
        import dataclasses
        info = probe(path, timeout_s)
        index = self.frame_index(str(path), info, Budget(str(path), timeout_s, "probing"))
        if len(index) and info.duration_s > 2 * index.duration_s + 1:
            log.warning("%s: header claims %g s, the stream holds %g s", path, info.duration_s, index.duration_s)
            info = dataclasses.replace(info, duration_s=index.duration_s, num_frames=len(index))
        return info

    def frames(self, path, numbers, width, height, info, index, budget: Budget, threads,
               report: DecodeReport, keyframes_only: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        numbers = [int(n) for n in numbers]
        if not numbers:
            return
        select = numbers
        if keyframes_only:          # ffmpeg then outputs keyframes only: n counts keyframes
            rank = {int(k): r for r, k in enumerate(index.keyframes)}
            select = [rank[n] for n in numbers]
        nbytes = width * height * 3
        with tempfile.TemporaryDirectory(prefix="bike-ffmpeg-") as tmp:
            args = _decode_args(path, select, width, height, threads, tmp, keyframes_only)
            remaining = max(budget.timeout_s - budget.active_s(), 0.001)
            with _FFmpegRun(args, remaining, budget.what) as run:
                budget.listeners.append(run)
                seen = 0
                try:
                    for number, n in zip(numbers, select):
                        buf = run.proc.stdout.read(nbytes)
                        if run.over_time() or len(buf) < nbytes:
                            break
                        run.progressed()
                        seen = _stderr_problems(run.stderr, seen, report)
                        report.decoded = n + 1          # ffmpeg decoded every frame (keyframe) up to this one
                        yield number, np.frombuffer(buf, np.uint8).reshape(height, width, 3)
                    else:
                        run.kill()              # everything needed is in: do not decode the rest
                    if run.killed:
                        raise VideoError(path, run.killed)
                    run.wait()
                    _stderr_problems(run.stderr, seen, report)
                finally:
                    budget.listeners.remove(run)
