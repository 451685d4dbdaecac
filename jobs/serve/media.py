"""Video files and thumbnails, looked up BY ID ONLY.

A request names a video by its id (``videos.video_id``) or a clip by its id; the file is the path the store
recorded for it when it was tagged. Nothing in a request is ever joined to a path: an id that is not in the
store is a 404 whatever it contains (``..``, ``/etc/passwd``, encoded forms, NUL). The recorded file is then
served only when:

- it is a regular file (after following links) that still has the size recorded at tagging time (a file
  replaced since, by anything, is refused);
- when the recorded path is now itself a symbolic link: its target lies inside the recorded file's own folder
  or is itself a file the store recorded (a link planted in place of a tagged video to reach elsewhere is
  refused, 403);
- and the file actually opened is the video that was tagged (:func:`open_verified`): it is opened with
  ``O_NOFOLLOW`` and checked on the open descriptor, never again by path. A video's id is the BLAKE2b-128 of
  its bytes (``index.store.ids.video_id``), so the descriptor's bytes are hashed and must give that id — once per
  state of the file: the result is remembered under (device, inode, size, mtime, ctime), which any swap or
  rewrite changes. A parent folder swapped for a link, or a forged ``videos`` row naming another file of
  the same size, is refused (403). The response and the thumbnail decoder then read that same descriptor
  (``/proc/self/fd/N``), so nothing can be swapped in between.

Relative recorded paths (``bike tag`` run on relative paths) are taken relative to the server's working
directory. Thumbnails are one frame decoded on demand by the engine's decoder (``engine.video.read_frame_at``:
the frame shown at that time, by its own timestamp, one decoder thread), scaled to ``Limits.thumb_width``,
and cached on disk under the cache directory (``$BIKE_CACHE_DIR/thumbs`` or ``~/.cache/bike/thumbs``), one
folder per store, at most ``Limits.thumb_cache_bytes`` in all (:class:`ThumbCache`: least recently used
thumbnails are deleted first).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

#: What video and clip ids look like (content hashes, ``path:<hash>`` error ids, test ids); anything else
#: is refused before any lookup.
VIDEO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
CLIP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}/[0-9]{1,9}")


class MediaError(Exception):
    """A file that cannot be served; ``status`` is the HTTP status (404 not found, 403 refused)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def valid_video_id(video_id: str) -> bool:
    return bool(VIDEO_ID.fullmatch(video_id)) and ".." not in video_id


def valid_clip_id(clip_id: str) -> bool:
    return bool(CLIP_ID.fullmatch(clip_id)) and ".." not in clip_id


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def checked_file(recorded: str, size: "int | None", recorded_paths) -> Path:
    """The file to serve for a path the store recorded, or :class:`MediaError` (see the module docstring).
    ``recorded_paths``: a callable real path → whether the store recorded a file there."""
    if not recorded or "\x00" in recorded:
        raise MediaError(404, "the store records no file for this video")
    path = os.path.abspath(recorded)
    real = os.path.realpath(path)
    if os.path.islink(path):
        folder = os.path.realpath(os.path.dirname(path))
        if not (_inside(real, folder) or recorded_paths(real)):
            raise MediaError(403, "the recorded video file is now a link to a file elsewhere; refused")
    try:
        st = os.stat(real)
    except OSError:
        raise MediaError(404, "the video file recorded in the store is not there any more") from None
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(403, "the recorded path is not a regular file; refused")
    if size is not None and int(size) > 0 and st.st_size != int(size):
        raise MediaError(403, f"the video file changed since it was tagged ({st.st_size} bytes, "
                              f"{int(size)} recorded); refused")
    return Path(real)


def thumbs_dir(store_root: Path) -> Path:
    from engine.model.config import cache_root
    base = cache_root() or Path.home() / ".cache" / "bike"      # thumbnails need a folder even with caches off
    key = hashlib.sha256(str(store_root).encode()).hexdigest()[:16]
    return base / "thumbs" / key


#: Where this process can reopen one of its own descriptors by name (the same open file, whatever the
#: path now points at): Linux's /proc, else /dev/fd (macOS, BSD); None: decode by the real path.
FD_DIR = next((d for d in ("/proc/self/fd", "/dev/fd") if os.path.isdir(d)), None)
CONTENT_ID = re.compile(r"[0-9a-f]{32}")
READ_BLOCK = 1 << 20


class VerifiedFile:
    """An open descriptor on the tagged video (see :func:`open_verified`); close it when done."""

    def __init__(self, fd: int, st: os.stat_result, real: Path):
        self.fd, self.stat, self.real = fd, st, real

    @property
    def path(self) -> str:
        """A name that opens this same file (``/proc/self/fd/N``) while the descriptor is open."""
        return f"{FD_DIR}/{self.fd}" if FD_DIR else str(self.real)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Identities:
    """Which (device, inode, size, mtime, ctime) states of files were hashed and gave which video id. A
    state is hashed once; a swap or a rewrite is a new state. Bounded (``entries``, least recent out)."""

    def __init__(self, entries: int = 4096):
        self.entries = entries
        self._seen: "OrderedDict[tuple, str]" = OrderedDict()
        self._lock = threading.Lock()

    def content_id(self, fd: int, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return self._seen[key]
        h = hashlib.blake2b(digest_size=16)              # index.store.ids.video_id, read from the descriptor
        at = 0
        while block := os.pread(fd, READ_BLOCK, at):
            h.update(block)
            at += len(block)
        got = h.hexdigest()
        if at == st.st_size:                              # read whole while it stayed this size
            with self._lock:
                self._seen[key] = got
                while len(self._seen) > self.entries:
                    self._seen.popitem(last=False)
        return got


def open_verified(recorded: str, size: "int | None", video_id: str, recorded_paths,
                  identities: Identities) -> VerifiedFile:
    """The tagged video, open: :func:`checked_file`'s checks, then ``O_NOFOLLOW`` open and, on the open
    descriptor, a regular file of the recorded size whose bytes hash to ``video_id`` (else 403)."""
    real = checked_file(recorded, size, recorded_paths)
    if not CONTENT_ID.fullmatch(video_id or ""):
        raise MediaError(403, "this video's id is not a content id, so the file cannot be verified; refused")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MediaError(403, "the recorded video file became a link while it was opened; refused") from None
        raise MediaError(404, "the video file recorded in the store is not there any more") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MediaError(403, "the recorded path is not a regular file; refused")
        if size is not None and int(size) > 0 and st.st_size != int(size):
            raise MediaError(403, "the video file changed since it was tagged (size); refused")
        os.set_blocking(fd, True)
        if identities.content_id(fd, st) != video_id:
            raise MediaError(403, "the file at the recorded path is not the video that was tagged (its content "
                                  "differs); refused")
        return VerifiedFile(fd, st, real)
    except BaseException:
        os.close(fd)
        raise


class ThumbCache:
    """The thumbnail folder of one store (or another folder of files ending in ``suffix``: the exported clips),
    at most ``max_bytes`` of them: a new thumbnail evicts the least
    recently used ones (by last use in this process; at start, by file time). Thread-safe; files another
    process deleted are skipped."""

    def __init__(self, folder: Path, max_bytes: int, suffix: str = ".jpg"):
        self.folder, self.max_bytes, self.suffix = Path(folder), int(max_bytes), suffix
        self._lock = threading.Lock()
        self._files: "OrderedDict[str, int]" = OrderedDict()
        self.total = 0
        found = []
        try:
            with os.scandir(self.folder) as it:
                for e in it:
                    if e.name.endswith(self.suffix) and e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        found.append((st.st_mtime_ns, e.name, st.st_size))
        except OSError:
            pass
        for _, name, n in sorted(found):
            self._files[name] = n
            self.total += n
        with self._lock:
            self._evict()

    def get(self, name: str) -> "Path | None":
        out = self.folder / name
        with self._lock:
            if name not in self._files:
                return None
            if not out.is_file():
                self.total -= self._files.pop(name)
                return None
            self._files.move_to_end(name)
        try:
            os.utime(out)                                  # the order survives a restart
        except OSError:
            pass
        return out

    def put(self, name: str, data: bytes) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        out = self.folder / name
        tmp = self.folder / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self.total += len(data) - self._files.pop(name, 0)
            self._files[name] = len(data)
            self._evict(keep=name)
        return out

    def _evict(self, keep: "str | None" = None) -> None:
        while self.total > self.max_bytes and self._files:
            name, n = next(iter(self._files.items()))
            if name == keep:
                break
            del self._files[name]
            self.total -= n
            (self.folder / name).unlink(missing_ok=True)


def export_name(clip_id: str, pad_s: float) -> str:
    """The cache file of a clip exported with ``pad_s`` seconds on each side (stream copy: ``bike export``)."""
    return hashlib.sha256(f"{clip_id}\0{round(max(0.0, pad_s), 1)}".encode()).hexdigest()[:32] + ".mp4"


def thumb_name(clip_id: str, t: float, width: int) -> str:
    """The cache file of the frame at ``t`` (rounded to 0.1 s) of a clip (its id holds the video's content id)."""
    return hashlib.sha256(f"{clip_id}\0{round(max(0.0, t), 1)}\0{width}".encode()).hexdigest()[:32] + ".jpg"


def thumbnail(opened: "VerifiedFile", t: float, width: int, timeout_s: float = 20.0) -> bytes:
    """A JPEG of the frame at ``t`` seconds (rounded to 0.1 s) of the opened video: decoded from the verified
    descriptor with one decoder thread (no FFmpeg frame threads for one frame), within ``timeout_s``."""
    import io

    from PIL import Image

    from engine.video import VideoError, read_frame_at
    t = round(max(0.0, t), 1)
    try:
        frame, _ = read_frame_at(opened.path, t, int(width), timeout_s=timeout_s, threads=1)
    except VideoError as e:
        raise MediaError(404, f"no frame at {t:g} s could be decoded from this video ({e.reason})") from None
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=80)
    return buf.getvalue()
