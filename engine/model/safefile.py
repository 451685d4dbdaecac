"""Open a file that someone else named — a checkpoint path, a label file, a store's ``models`` row — only when it
is a regular file of bounded size.

``open(path)`` on a FIFO blocks until a writer comes (forever, for a crafted store), and ``/dev/zero`` or a
character device never ends. :func:`open_regular` opens without blocking (``O_NONBLOCK``: opening a FIFO
returns at once), then looks at what it opened (``fstat`` on the descriptor, so a file swapped after a check
by name changes nothing) and refuses anything that is not a regular file, or is larger than the cap the
caller gives. Callers turn :class:`UnsafeFile` into their own one-line error (``LabelError``,
``CheckpointError``) with the path in front.
"""
from __future__ import annotations

import os
import stat

#: Label files and lexicons (``--labels FILE``, a store's ``models.lexicon``): the largest built-in set is
#: ~10 KB, so 16 MiB admits any real label set.
MAX_LABEL_FILE_BYTES = 16 << 20
#: Weights and checkpoint files (``--pretrained FILE``, ``--checkpoint FILE``, a store's ``models`` row):
#: ViT-bigG-14 in float32 is ~10 GB, so 32 GiB admits every open_clip architecture.
MAX_WEIGHTS_FILE_BYTES = 32 << 30


class UnsafeFile(ValueError):
    """The path is not a regular file, or is over the cap; ``str(e)`` is the reason (no path)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path, max_bytes: int, what: str = "file"):
    """``path`` opened for binary reading (a file object the caller closes), only if it is a regular file of
    at most ``max_bytes`` bytes; else :class:`UnsafeFile`. ``what`` names the file in the size message."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UnsafeFile("file not found") from None
    except OSError as e:
        raise UnsafeFile(f"cannot open it: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{_kind(st.st_mode)}, not a regular file; bike reads only regular files here")
        if st.st_size > max_bytes:
            raise UnsafeFile(f"{st.st_size} bytes, over the {max_bytes >> 20} MiB cap for a {what}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, max_bytes: int, what: str = "file") -> bytes:
    """The whole content of a regular file of at most ``max_bytes`` (see :func:`open_regular`); a file that
    grows past the cap while it is read is refused too."""
    with open_regular(path, max_bytes, what) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFile(f"over the {max_bytes >> 20} MiB cap for a {what}")
    return data
