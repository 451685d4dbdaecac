"""Remembered content ids: a rerun of ``bike tag`` does not read every byte of an unchanged archive again.

A ``video_id`` is the BLAKE2b hash of the whole file (:func:`index.ids.video_id`, ~1 s/GB), so confirming that
a 10 TB archive has nothing new would read 10 TB. The store keeps, per absolute path, the size, modification
time (ns) and inode of every file it hashed, with the id it got::

    STORE/_ids/files.parquet      path, size, mtime_ns, inode, video_id   (replaced atomically)

:meth:`IdCache.identify` returns the remembered id while all three are unchanged and hashes the file
otherwise — the rule rsync and git use to skip unchanged files. Writing a file changes its mtime, so an
edited video is re-hashed; replacing a file by another one (``mv``, a new copy) changes the inode. A file
whose bytes change without any of the three changing (a tool that restores mtimes on a rewrite of the same
length) would keep its old id: ``bike tag --rehash`` hashes every file again and replaces what the cache
remembered.

Only ids of successfully read files are remembered; a file that changed while it was being hashed is not.
The cache is a speed-up only: deleting ``STORE/_ids`` is always safe.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import ids
from .store import atomic_write

FOLDER = "_ids"
FILE = "files.parquet"
SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                    ("inode", pa.int64()), ("video_id", pa.string())])


def _key(st: os.stat_result) -> tuple:
    return st.st_size, st.st_mtime_ns, st.st_ino


class IdCache:
    """``identify(path)`` like :func:`index.ids.identify`, answered from ``STORE/_ids`` when the file is
    unchanged (``trust=False``: every file is hashed and the cache refreshed with the result). Thread-safe
    (``bike tag`` hashes several files at once). ``save()`` writes what was learnt. ``hits`` / ``hashed``
    count the files answered from the cache / read and hashed (unreadable files count in neither)."""

    def __init__(self, store_root: "str | os.PathLike", trust: bool = True):
        self.path = Path(store_root) / FOLDER / FILE
        self.trust = trust
        self.hits = self.hashed = 0
        self._lock = threading.Lock()
        self._known: dict = {}
        self._changed = False
        if self.path.is_file():
            try:
                t = pq.read_table(self.path, schema=SCHEMA).to_pydict()
            except (pa.ArrowInvalid, OSError, ValueError):       # unreadable: start afresh (it is only a cache)
                t = {name: [] for name in SCHEMA.names}
                self._changed = True
            self._known = {p: ((s, m, i), v) for p, s, m, i, v in zip(t["path"], t["size"], t["mtime_ns"],
                                                                     t["inode"], t["video_id"])}

    def __len__(self) -> int:
        return len(self._known)

    def identify(self, path: str) -> "tuple[str, str | None]":
        """``(video_id, None)``, or ``(path_id, reason)`` when the file cannot be read."""
        key = os.path.abspath(path)
        try:
            before = _key(os.stat(key))
        except OSError:
            before = None                                 # unreadable: ids.identify says why
        hit = self._known.get(key) if self.trust and before is not None else None
        if hit is not None and hit[0] == before:
            with self._lock:
                self.hits += 1
            return hit[1], None
        vid, err = ids.identify(path)
        if err is not None:
            return vid, err
        with self._lock:
            self.hashed += 1
        try:
            unchanged = before is not None and _key(os.stat(key)) == before
        except OSError:
            unchanged = False
        if unchanged:                                     # not modified while it was read
            with self._lock:
                self._known[key] = (before, vid)
                self._changed = True
        return vid, err

    def save(self) -> bool:
        """Write the cache when it learnt something → whether it wrote."""
        if not self._changed:
            return False
        with self._lock:
            items = list(self._known.items())
            self._changed = False
        table = pa.table({"path": [p for p, _ in items], "size": [k[0] for _, (k, _) in items],
                          "mtime_ns": [k[1] for _, (k, _) in items], "inode": [k[2] for _, (k, _) in items],
                          "video_id": [v for _, (_, v) in items]}, schema=SCHEMA)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda tmp: pq.write_table(table, tmp))
        return True
