"""Remembered content ids of object-storage sources: ``STORE/_ids/remote.parquet`` (url, size, etag, video_id).

The object-storage counterpart of :mod:`index.store.idcache` (which remembers local files by path, size, mtime and
inode): an object keeps its remembered id while its size and ETag are unchanged, so a rerun of ``bike tag``
over an unchanged bucket reads no object at all. Listing, hashing and reading objects are the byte sources'
work (:mod:`engine.sources.remote`); this module only keeps what was learnt, in the store.
"""
from __future__ import annotations

from engine.sources.remote import RemoteError, content_id, head, pending_id

from index.store import ids
from .idcache import KnownIds


class RemoteIds(KnownIds):
    """``identify(url)`` → ``(video_id, None)`` or ``(path_id, reason)``, like ``IdCache.identify`` for local
    files: answered from ``STORE/_ids/remote.parquet`` while the object's size and ETag are unchanged. An
    object with no remembered id is not read here: it gets ``pending_id(url)``, its decode task hashes the
    bytes it reads, and the driver calls ``remember`` with the result. With ``trust=False`` (``--rehash``)
    every object is hashed here instead, by streaming it (ranged reads, no local copy), so that what the
    store holds is checked before anything is decoded. ``listed`` (URL → RemoteObject) spares one request
    per object. Thread-safe; ``save()`` writes what was learnt; ``hits`` / ``hashed`` count as in IdCache
    (the shared cache is :class:`index.store.idcache.KnownIds`)."""

    FILE = "remote.parquet"

    @staticmethod
    def schema():
        import pyarrow as pa
        return pa.schema([("url", pa.string()), ("size", pa.int64()), ("etag", pa.string()),
                          ("video_id", pa.string())])

    def __init__(self, store_root, trust: bool = True, listed: "dict | None" = None):
        super().__init__(store_root, trust)
        self.listed = dict(listed or {})

    def identify(self, url: str) -> "tuple[str, str | None]":
        obj = self.listed.get(url)
        try:
            if obj is None or obj.size is None:
                obj = head(url)
            if self.trust and obj.etag:
                hit = self._remembered(url, (obj.size, obj.etag))
                if hit is not None:
                    return hit, None
            if obj.size == 0:
                return ids.path_id(url), "empty object"
            if self.trust:
                return pending_id(url), None                 # hashed by its decode task: read once
            vid = content_id(url)
        except RemoteError as e:
            return ids.path_id(url), e.reason
        self.remember(url, obj.size, obj.etag, vid)
        return vid, None

    def remember(self, url: str, size: "int | None", etag: "str | None", video_id: str) -> None:
        """``url`` (of this size and ETag) holds the content ``video_id`` (a hash just computed); an object
        without an ETag is counted but not remembered (nothing would tell a later run that it changed)."""
        self._learn(url, (size, etag) if etag else None, video_id)
