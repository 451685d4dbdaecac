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
        reason = "file not found"
    except IsADirectoryError:
        reason = "is a directory, not a video file"
    except PermissionError:
        reason = "permission denied"
    except OSError as e:
        reason = "symbolic link loop" if e.errno == errno.ELOOP else f"cannot read it: {e.strerror or e}"
    return path_id(os.path.abspath(path)), reason


def model_id(fingerprint: dict, label_digest: str, window_s: float, windows: "str | None" = None) -> str:
    """Stable id of everything that determines a tag row: model name, weights, frames, lexicon, label set,
    window length, and the window plan when it is not fixed windows (``windows``, e.g. the shot detector
    and ``--min-shot`` of ``bike tag --windows shots``: it changes which clips exist). 16 hex chars; fixed
    windows give the ids they always had."""
    extra = {"windows": windows} if windows and windows != "fixed" else {}
    key = json.dumps({**fingerprint, "labels": label_digest, "window_s": float(window_s), **extra}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]
