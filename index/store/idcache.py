"""Remembered content ids: a rerun of ``bike tag`` does not read every byte of an unchanged archive again.

A ``video_id`` is the BLAKE2b hash of the whole file (:func:`index.store.ids.video_id`, ~1 s/GB), so confirming that
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
The cache is a speed-up only: deleting ``STORE/_ids`` is always safe. It is read and written through the
store's filesystem seam (index/store/storefs.py), so a store on object storage keeps it beside its shards.
"""
from __future__ import annotations

import os
import threading

import pyarrow as pa
import pyarrow.parquet as pq

from index.store import ids
from .parquetio import read_parquet
from .storefs import filesystem_for

FOLDER = "_ids"
FILE = "files.parquet"
SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                    ("inode", pa.int64()), ("video_id", pa.string())])


def load_known(fs, key: str, schema: pa.Schema) -> "tuple[dict, bool]":
    """A remembered-ids file (``key`` in the store filesystem ``fs``) → ``({name: (key, video_id)}, unreadable)``.
    The schema's first column is the name (path, URL), its last the video_id, the columns between make the key.
    An unreadable file gives an empty cache (it is only a cache) and ``unreadable=True``, so that the next
    ``save`` replaces it."""
    try:
        got = fs.read_tagged(key)
    except Exception:  # noqa: BLE001 - unreachable store, a directory in the way: only a cache
        return {}, True
    if got is None:
        return {}, False
    try:
        t = read_parquet(got[0], schema=schema).to_pydict()
    except (pa.ArrowException, OSError, ValueError):
        return {}, True
    return {row[0]: (tuple(row[1:-1]), row[-1]) for row in zip(*(t[n] for n in schema.names))}, False


def save_known(fs, key: str, known: dict, schema: pa.Schema) -> None:
    """Write ``{name: (key, video_id)}`` in the layout :func:`load_known` reads (replaced atomically)."""
    items = list(known.items())
    names = schema.names
    columns = {names[0]: [n for n, _ in items], names[-1]: [v for _, (_, v) in items]}
    for j, name in enumerate(names[1:-1]):
        columns[name] = [k[j] for _, (k, _) in items]
    table = pa.table({n: columns[n] for n in names}, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    fs.write(key, sink.getvalue().to_pybytes())


def _key(st: os.stat_result) -> tuple:
    return st.st_size, st.st_mtime_ns, st.st_ino


class KnownIds:
    """What both remembered-id caches share (local files here, objects in :mod:`index.store.remoteids`): a table
    ``STORE/_ids/<FILE>`` of ``name → (key, video_id)`` read through the store's filesystem seam, where ``key``
    is what must be unchanged for the remembered id to hold (size, mtime, inode; size, ETag). Subclasses set
    ``FILE`` and ``schema()`` (first column the name, last the video_id) and write ``identify``. Thread-safe;
    ``save()`` writes what was learnt; ``hits`` / ``hashed`` count the names answered from the cache / hashed."""

    FILE = ""

    @staticmethod
    def schema() -> pa.Schema:
        raise NotImplementedError

    def __init__(self, store_root: "str | os.PathLike", trust: bool = True):
        self._fs, self._key = filesystem_for(store_root), f"{FOLDER}/{self.FILE}"
        self.path = self._fs.path(self._key)
        self.trust = trust
        self.hits = self.hashed = 0
        self._lock = threading.Lock()
        self._known, self._changed = load_known(self._fs, self._key, self.schema())   # unreadable: afresh

    def __len__(self) -> int:
        return len(self._known)

    def _remembered(self, name: str, key: tuple) -> "str | None":
        """The id remembered for ``name`` while its ``key`` is unchanged (counted as a hit), else None."""
        hit = self._known.get(name)
        if hit is None or hit[0] != key:
            return None
        with self._lock:
            self.hits += 1
        return hit[1]

    def _learn(self, name: str, key: "tuple | None", video_id: str) -> None:
        """Count one hash; remember ``video_id`` for ``name`` under ``key`` (None: hashed, not remembered)."""
        with self._lock:
            self.hashed += 1
            if key is not None:
                self._known[name] = (key, video_id)
                self._changed = True

    def save(self) -> bool:
        """Write the cache when it learnt something → whether it wrote."""
        if not self._changed:
            return False
        with self._lock:
            known = dict(self._known)
            self._changed = False
        save_known(self._fs, self._key, known, self.schema())
        return True


class IdCache(KnownIds):
    """``identify(path)`` like :func:`index.store.ids.identify`, answered from ``STORE/_ids`` when the file is
    unchanged (``trust=False``: every file is hashed and the cache refreshed with the result). Thread-safe
    (``bike tag`` hashes several files at once). ``save()`` writes what was learnt. ``hits`` / ``hashed``
    count the files answered from the cache / read and hashed (unreadable files count in neither)."""

    FILE = FILE

    @staticmethod
    def schema() -> pa.Schema:
        return SCHEMA

    def identify(self, path: str) -> "tuple[str, str | None]":
        """``(video_id, None)``, or ``(path_id, reason)`` when the file cannot be read."""
        key = os.path.abspath(path)
        try:
            before = _key(os.stat(key))
        except OSError:
            before = None                                 # unreadable: ids.identify says why
        if self.trust and before is not None:
            hit = self._remembered(key, before)
            if hit is not None:
                return hit, None
        vid, err = ids.identify(path)
        if err is not None:
            return vid, err
        try:
            unchanged = before is not None and _key(os.stat(key)) == before
        except OSError:
            unchanged = False
        self._learn(key, before if unchanged else None, vid)   # modified while it was read: not remembered
        return vid, err
