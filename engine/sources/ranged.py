"""Reading one object with ranged GETs, for the decoders: :class:`RemoteSource`, an ``engine.video`` byte source.

``engine.sources.remote.decode_remote`` hands it to an in-process decoder (pyav, nvdec), which reads the object through
seekable file objects as if it were a local file; ``engine.sources.remote.spooled`` copies it into a spool file through
it. Either way every byte crosses the network once while the object fits in the block cache
(``BIKE_STREAM_CACHE_MB``), and the content id is computed on the way (docs/storage.md "Object-storage
sources": the rule, the bounds, the measurements).
"""
from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from engine.video.types import ByteSource, ReadError

from engine.sources import remote
from .remote import RemoteError

#: Bytes per ranged GET, and blocks fetched ahead of a sequential reader.
BLOCK_BYTES = 4 << 20
AHEAD = 2


def cache_limit() -> int:
    """Most bytes of one object a :class:`RemoteSource` keeps in memory (``BIKE_STREAM_CACHE_MB``, default 256)."""
    from engine.settings import Settings
    return max(1, int(Settings.from_env().stream_cache_mb * 2**20))


def stall_limit() -> float:
    """Seconds one ranged read (with its retries) may take (``BIKE_STREAM_STALL_S``, default 120)."""
    from engine.settings import Settings
    return Settings.from_env().stream_stall_s


def _in_thread(fn) -> Future:
    """``fn()`` in a daemon thread (a stalled request must not keep the worker process alive at exit)."""
    fut: Future = Future()

    def run():
        try:
            fut.set_result(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            fut.set_exception(e)
    threading.Thread(target=run, daemon=True, name="bike-ranged-read").start()
    return fut


class RemoteSource(ByteSource):
    """An object read with ranged GETs, for the decoders (``engine.video.types.ByteSource``).

    ``open()`` gives seekable file objects that share one block cache: blocks of ``block`` bytes, fetched
    when first read (plus ``AHEAD`` blocks ahead of a sequential reader, in background threads), at most
    ``cache_bytes`` kept (least recently used dropped first). Every request is pinned to the ETag seen when
    the object was opened (S3 ``If-Match``), so a replaced object is an error, never a mix of two versions;
    a dropped connection resumes at the byte it reached, with backoff. The bytes are hashed in order as they
    arrive; :meth:`finish` fetches what the decoder skipped and returns the content id (BLAKE2b-128, equal to
    ``index.store.ids.video_id`` of the same bytes on disk). ``gets`` / ``fetched`` count requests and bytes. A
    read that fails for good sets ``failure`` and raises ``ReadError``; one that takes longer than
    ``stall_s`` (``BIKE_STREAM_STALL_S``) fails as stalled. Memory: at most ``capacity`` blocks cached
    (``peak_cached`` bytes, the most held at once) plus ``ahead`` blocks in flight."""

    def __init__(self, url: str, block: "int | None" = None, cache_bytes: "int | None" = None,
                 stall_s: "float | None" = None, ahead: int = AHEAD):
        info = remote._info(url)                            # size and ETag now: every GET is pinned to them
        if info.get("type") == "directory":
            raise RemoteError(url, "is a folder, not an object")
        self.name, self.size = url, int(info.get("size") or 0)
        self.etag = remote._identity(info)
        self.identity = self.etag or ""
        raw = info.get("ETag") or info.get("etag")
        self._if_match = str(raw) if raw else None
        self.block = max(1, int(block or BLOCK_BYTES))
        self.capacity = max(2, (cache_bytes or cache_limit()) // self.block)
        self.stall_s = stall_limit() if stall_s is None else stall_s
        self.ahead = ahead
        self.failure: "str | None" = None
        self.gets = self.fetched = 0
        self._cache: OrderedDict = OrderedDict()            # block number → bytes
        self._cached = self.peak_cached = 0                 # bytes in the cache: now, at most
        self._pending: dict = {}                            # block number → Future (read-ahead)
        self._last = -2
        self._lock = threading.Lock()
        self._hash = hashlib.blake2b(digest_size=16)
        self._hashed = 0                                    # bytes hashed (in order) so far
        self._fs, self._path = remote.filesystem(url)
        client = getattr(self._fs, "s3", None)
        self._client = client if (remote.url_scheme(url) == "s3" and client is not None
                                  and hasattr(client, "get_paginator")) else None   # a synchronous boto3 client

    @property
    def blocks(self) -> int:
        return (self.size + self.block - 1) // self.block

    def open(self):
        return _Reader(self)

    # ---- fetching -----------------------------------------------------------------------------------
    def _request(self, start: int, end: int, sink) -> None:
        """One ranged GET of ``[start, end)``, the body handed to ``sink`` as it arrives."""
        with self._lock:
            self.gets += 1
        if self._client is not None:
            bucket, _, key = self._path.partition("/")
            kw = {"IfMatch": self._if_match} if self._if_match else {}
            body = self._client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **kw)["Body"]
            try:
                for chunk in body.iter_chunks(1 << 20):
                    sink(chunk)
            finally:
                body.close()
        else:
            sink(self._fs.cat_file(self._path, start=start, end=end))

    def _fetch(self, k: int) -> bytes:
        """Block ``k``, retried with backoff on throttling and dropped connections, resuming at the byte
        reached; raises RemoteError."""
        start, end = k * self.block, min(self.size, (k + 1) * self.block)
        got = bytearray()

        def sink(chunk):
            got.extend(chunk)
            with self._lock:
                self.fetched += len(chunk)
        failures = 0
        while len(got) < end - start:
            try:
                self._request(start + len(got), end, sink)
                if len(got) < end - start:
                    raise RemoteError(self.name, f"object changed while it was read (ended at byte "
                                                 f"{start + len(got)} of {self.size})")
            except RemoteError:
                raise
            except Exception as e:  # noqa: BLE001 - classified: retried or turned into the error row
                failures += 1
                if not remote._transient(e) or failures >= remote.ATTEMPTS:
                    reason = remote.reason_of(e)
                    if reason == "object not found" and (start or got):
                        reason = f"object vanished after {start + len(got)} of {self.size} bytes were read"
                    raise RemoteError(self.name, reason) from None
                time.sleep(remote.BACKOFF_S * (2 ** failures) * (0.5 + random.random()))
        if len(got) > end - start:
            raise RemoteError(self.name, f"object changed while it was read (more than {self.size} bytes)")
        return bytes(got)

    def _fail(self, reason: str):
        self.failure = self.failure or reason
        return ReadError(self.failure)

    def _wait(self, fut: Future) -> bytes:
        try:
            return fut.result(timeout=self.stall_s)
        except FutureTimeout:
            raise self._fail(f"read stalled: no complete answer to a ranged read within {self.stall_s:g} s "
                             "(BIKE_STREAM_STALL_S)") from None
        except RemoteError as e:
            raise self._fail(e.reason) from None

    def _store(self, k: int, data: bytes) -> None:
        if k not in self._cache:
            self._cached += len(data)
        self._cache[k] = data
        self._cache.move_to_end(k)
        while self._hashed < self.size and self._hashed // self.block in self._cache:   # hash in order
            part = self._cache[self._hashed // self.block]
            self._hash.update(part)
            self._hashed += len(part)
        while len(self._cache) > self.capacity:
            self._cached -= len(self._cache.popitem(last=False)[1])
        self.peak_cached = max(self.peak_cached, self._cached)

    def _harvest(self) -> None:
        for j, fut in list(self._pending.items()):
            if fut.done():
                del self._pending[j]
                if fut.exception() is None:
                    self._store(j, fut.result())

    def block_at(self, k: int) -> bytes:
        """Block ``k`` from the cache or the server (raises ReadError once a read failed for good)."""
        if self.failure:
            raise ReadError(self.failure)
        self._harvest()
        data = self._cache.get(k)
        if data is None:
            fut = self._pending.pop(k, None) or _in_thread(lambda: self._fetch(k))
            data = self._wait(fut)
            self._store(k, data)
        else:
            self._cache.move_to_end(k)
        if k == self._last + 1 or k == 0:                   # a sequential reader: fetch ahead
            for j in range(k + 1, min(k + 1 + self.ahead, self.blocks)):
                if j not in self._cache and j not in self._pending:
                    self._pending[j] = _in_thread(lambda j=j: self._fetch(j))
        self._last = k
        return data

    def finish(self) -> str:
        """Complete the hash (fetching the ranges the decoder did not read) → the content id. Raises
        RemoteError when a read failed."""
        if self.failure:
            raise RemoteError(self.name, self.failure)
        for fut in list(self._pending.values()):
            try:
                fut.result(timeout=self.stall_s)
            except Exception:  # noqa: BLE001 - fetched again below
                pass
        self._harvest()
        while self._hashed < self.size:
            k = self._hashed // self.block
            data = self._cache.get(k)
            if data is None:
                try:
                    data = self._wait(_in_thread(lambda: self._fetch(k)))
                except ReadError as e:
                    raise RemoteError(self.name, e.reason) from None
            self._hash.update(data)
            self._hashed += len(data)
        self._cache.clear()
        self._cached = 0
        return self._hash.hexdigest()

    def stats(self, content_id: "str | None") -> dict:
        """What the decode task tells the driver (jobs/tag/tag.py): the id and the identity it belongs to."""
        return {"content_id": content_id, "size": self.size, "etag": self.etag, "gets": self.gets,
                "bytes": self.fetched}


class _Reader(io.RawIOBase):
    """A seekable file object over a :class:`RemoteSource`'s blocks."""

    def __init__(self, source: RemoteSource):
        super().__init__()
        self.src, self.pos = source, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.src.size}.get(whence)
        if base is None:
            raise ValueError(f"bad whence {whence}")
        self.pos = max(0, base + int(offset))
        return self.pos

    def read(self, n: int = -1) -> bytes:
        src = self.src
        end = src.size if n is None or n < 0 else min(src.size, self.pos + n)
        out = []
        while self.pos < end:
            k = self.pos // src.block
            data = src.block_at(k)
            lo = self.pos - k * src.block
            part = data[lo: lo + (end - self.pos)]
            if not part:
                break
            out.append(part)
            self.pos += len(part)
        return b"".join(out)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)
