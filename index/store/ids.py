"""Content-derived identities: a renamed or copied video is the same video; an edited one is not."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat


class NotRegularFile(OSError):
    """A path that is not a regular file (FIFO, device, socket, directory): never read."""


def open_regular(path: str):
    """Open ``path`` for reading only if it is a regular file. Opened with ``O_NONBLOCK`` (opening a FIFO
    does not wait for a writer) and checked with ``fstat`` on the open descriptor (no race with a rename);
    raises :class:`NotRegularFile` for FIFOs, devices (``/dev/zero``), sockets and directories."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise NotRegularFile(f"is {kind}, not a regular video file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def video_id(path: str, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes (hex, 32 chars). Reads the whole file (I/O-bound, ~1 s/GB). Only
    regular files are read (:func:`open_regular`)."""
    h = hashlib.blake2b(digest_size=16)
    with open_regular(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def path_id(path: str) -> str:
    """Id of a file that cannot be read at all (missing, no permission): ``"path:"`` + BLAKE2b-96 of its
    absolute path. Such a file still gets a ``videos`` row with status 'error'; once it becomes readable it
    gets a content id (:func:`video_id`) and is tagged like any new video."""
    h = hashlib.blake2b(str(path).encode("utf-8", "surrogateescape"), digest_size=12)
    return "path:" + h.hexdigest()


def identify(path: str) -> "tuple[str, str | None]":
    """``(video_id, None)`` from the content, or ``(path_id, reason)`` when the bytes cannot be read (missing,
    no permission, not a regular file, a symbolic link loop)."""
    try:
        return video_id(path), None
    except NotRegularFile as e:
        reason = str(e)
    except FileNotFoundError:
        reason = _dangling(path) or "file not found"
    except IsADirectoryError:
        reason = "is a directory, not a video file"
    except PermissionError:
        reason = "permission denied"
    except OSError as e:
        reason = "symbolic link loop" if e.errno == errno.ELOOP else f"cannot read it: {e.strerror or e}"
    return path_id(os.path.abspath(path)), reason


def _dangling(path: str) -> "str | None":
    """"dangling symbolic link to TARGET" when ``path`` is a link whose target does not exist, else None."""
    try:
        return f"dangling symbolic link to {os.readlink(path)}" if os.path.islink(path) else None
    except OSError:
        return None


#: The frame sampling a model_id leaves unsaid: stores tagged before the sampling entered the id used it, so
#: their ids stay what they were (a store tagged with ``keyframes`` before then shares the ``exact`` id).
DEFAULT_SAMPLING = "exact"


def model_id(fingerprint: dict, label_digest: str, window_s: float, sampling: str = DEFAULT_SAMPLING,
             windows: "str | None" = None) -> str:
    """Stable id of everything that determines a tag row: model name, weights, frames, lexicon, label set,
    window length, the frame sampling (``engine.video`` ``exact`` or ``keyframes``: which frames were
    scored) and the window plan when it is not fixed windows (``windows``, e.g. the shot detector and
    ``--min-shot`` of ``bike tag --windows shots``: it changes which clips exist). 16 hex chars. The default
    sampling and fixed windows add nothing to the key, so ids made before they counted are unchanged."""
    key = {**fingerprint, "labels": label_digest, "window_s": float(window_s)}
    if sampling != DEFAULT_SAMPLING:
        key["sampling"] = sampling
    if windows and windows != "fixed":
        key["windows"] = windows
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def sampling_of(row: dict, samplings) -> "str | None":
    """Which of ``samplings`` a ``models`` row was tagged with: the one its fingerprint, label digest and
    window hash to its model_id with (None when none does: a row this code did not write)."""
    try:
        fp = json.loads(row["fingerprint"])
    except (TypeError, ValueError, KeyError):
        return None
    for s in samplings:
        if model_id(fp, row["label_digest"], row["window_s"], s) == row["model_id"]:
            return s
    return None
