"""Video files and thumbnails, looked up BY ID ONLY.

A request names a video by its id (``videos.video_id``) or a clip by its id; the file is the path the store
recorded for it when it was tagged. Nothing in a request is ever joined to a path: an id that is not in the
store is a 404 whatever it contains (``..``, ``/etc/passwd``, encoded forms, NUL). The recorded file is then
served only when:

- it is a regular file (after following links) that still has the size recorded at tagging time (a file
  replaced since, by anything, is refused);
- when the recorded path is now itself a symbolic link: its target lies inside the recorded file's own folder
  or is itself a file the store recorded (a link planted in place of a tagged video to reach elsewhere is
  refused, 403).

Relative recorded paths (``bike tag`` run on relative paths) are taken relative to the server's working
directory. Thumbnails are one frame decoded on demand by the engine's decoder (``engine.video.read_frame_at``:
the frame shown at that time, by its own timestamp), scaled to
``Limits.thumb_width``, and cached on disk under the cache directory (``$BIKE_CACHE_DIR/thumbs`` or
``~/.cache/bike/thumbs``), one folder per store.
"""
from __future__ import annotations

import hashlib
import os
import re
import uuid
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
    import stat
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(403, "the recorded path is not a regular file; refused")
    if size is not None and int(size) > 0 and st.st_size != int(size):
        raise MediaError(403, f"the video file changed since it was tagged ({st.st_size} bytes, "
                              f"{int(size)} recorded); refused")
    return Path(real)


def thumbs_dir(store_root: Path) -> Path:
    from engine.config import cache_root
    base = cache_root() or Path.home() / ".cache" / "bike"      # thumbnails need a folder even with caches off
    key = hashlib.sha256(str(store_root).encode()).hexdigest()[:16]
    return base / "thumbs" / key


def thumbnail(video: Path, clip_id: str, t: float, cache: Path, width: int) -> Path:
    """A JPEG of the frame at ``t`` seconds of ``video`` (cached). ``t`` is rounded to 0.1 s."""
    t = round(max(0.0, t), 1)
    name = hashlib.sha256(f"{clip_id}\0{t}\0{width}\0{video}".encode()).hexdigest()[:32] + ".jpg"
    out = cache / name
    if out.exists() and out.stat().st_size:
        return out
    cache.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    from engine.video import VideoError, read_frame_at
    try:
        frame, _ = read_frame_at(video, t, int(width))
    except VideoError as e:
        raise MediaError(404, f"no frame at {t:g} s could be decoded from this video ({e.reason})") from None
    tmp = cache / f".{name}.{uuid.uuid4().hex[:6]}.tmp"
    try:
        Image.fromarray(frame).save(tmp, format="JPEG", quality=80)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
