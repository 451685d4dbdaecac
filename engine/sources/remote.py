"""Object-storage sources for ``bike tag``: ``s3://bucket/prefix/``, ``gs://…``, ``https://host/video.mp4``.

Listing, identifying and reading go through fsspec's filesystems (``s3fs`` for ``s3://``, ``gcsfs`` for
``gs://``, plain HTTP for ``http(s)://``), with credentials from the usual environment variables and config
files. ``AWS_ENDPOINT_URL`` (or ``--endpoint URL``, which sets it for its command only: :func:`using_endpoint`) points ``s3://`` at any
S3-compatible store (MinIO, Ceph, a local test server).

* **Listing** (:func:`list_remote`): a prefix ending in ``/`` (or naming a "folder") is listed recursively,
  keeping names with a video extension and skipping hidden names, like a local folder; a glob
  (``s3://b/**/*.mp4``) is expanded; any other URL is one object, kept even when missing (it becomes an error
  row "object not found"). Each listed object carries its size and ETag (or modification time).
* **Identity** (:func:`content_id`): the content id is the same BLAKE2b hash of the bytes as for a local file
  (``index.store.ids.video_id``: a video uploaded from disk keeps its id). The store remembers it per URL with the
  cheap identity (size + ETag) in ``STORE/_ids/remote.parquet`` (``index.store.remoteids.RemoteIds``); a rerun over an unchanged bucket reads no object
  at all. An object with no remembered id is not read on the driver: it gets a provisional id
  (:func:`pending_id`) and its decode task computes the content id from the bytes it reads.
* **Decoding** (:func:`decode_remote`): the in-process decoders (pyav, nvdec) read the object through a
  seekable file object backed by ranged GETs (``engine.sources.ranged.RemoteSource``: pinned to the ETag seen
  first, read-ahead, a block cache of at most ``BIKE_STREAM_CACHE_MB`` per decode), so no local copy is made; the bytes are hashed as they arrive, the ranges the decoder skipped are fetched at the end to
  complete the hash, and the content id travels back with the decode's "end" message. The ffmpeg-CLI
  decoder (and ``BIKE_REMOTE_READ=spool``) gets a bounded local spool file instead (``BIKE_SPOOL_DIR``,
  default the temp folder; objects above ``BIKE_SPOOL_MAX_GB``, default 50, are refused with an error row),
  hashed while it is written and deleted after decoding. docs/storage.md "Object-storage sources" has the
  rule and the measurements.
* **Errors**: throttling and dropped connections are retried with exponential backoff (a dropped transfer
  resumes at the byte it reached); a missing object, a denied one, one that changes or vanishes while it is
  read, a ranged read that stalls (``BIKE_STREAM_STALL_S``), or one still failing after the retries becomes
  an error row with the reason (:class:`RemoteError`), and the job goes on; a video whose bytes were not all
  read is never decoded from the part that arrived.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import random
import tempfile
import threading
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: URL schemes treated as object storage / web sources.
SCHEMES = ("s3", "gs", "gcs", "http", "https", "az", "abfs")
#: URL schemes a store may live under (index/store/storefs.py ObjectFS).
STORE_SCHEMES = ("s3",)
#: Provisional video id of an object whose content id its decode task computes (index.store.remoteids.RemoteIds, jobs/tag/tag.py).
PENDING = "new:"
#: Attempts for one request (throttling, dropped connections) and the first backoff (doubles each time).
ATTEMPTS = 6
BACKOFF_S = 0.2


class RemoteError(Exception):
    """An object that cannot be listed or read; ``reason`` is what the error row says."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason


def url_scheme(spec) -> "str | None":
    """The lower-cased scheme of ``spec`` when it is written as a URL (``S3://b/k`` → ``"s3"``), else None (a
    local path). The one place that decides whether a string is a URL; :func:`is_remote` and the store's
    ``is_object_url`` (index/store/storefs.py) ask it."""
    s = str(spec)
    if "://" not in s:
        return None
    return s.split("://", 1)[0].lower()


def is_remote(spec, schemes: "tuple[str, ...]" = SCHEMES) -> bool:
    """Whether ``spec`` is a URL of one of ``schemes`` (by default: any object storage / web source we read)."""
    return url_scheme(spec) in schemes


def endpoint() -> "str | None":
    return os.environ.get("AWS_ENDPOINT_URL") or None


@contextlib.contextmanager
def using_endpoint(url: "str | None"):
    """``--endpoint``: point ``s3://`` at an S3-compatible store while the command runs, then restore
    ``$AWS_ENDPOINT_URL`` (the variable boto3/s3fs and the Ray workers this command starts read: it belongs to
    those programs, so it is set there rather than threaded through every store call). None: unchanged."""
    if not url:
        yield
        return
    saved = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved


_FS: dict = {}
_FS_LOCK = threading.Lock()


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for ``url``; one filesystem per scheme and endpoint per process."""
    import fsspec
    scheme = url_scheme(url)
    key = (scheme, endpoint())
    with _FS_LOCK:
        fs = _FS.get(key)
        if fs is None:
            options: dict = {}
            if scheme == "s3" and endpoint():
                options["client_kwargs"] = {"endpoint_url": endpoint()}
            with warnings.catch_warnings():          # an old s3fs warns about itself on import
                warnings.simplefilter("ignore")
                try:
                    fs = fsspec.filesystem(scheme, skip_instance_cache=True, **options)
                except ImportError as e:
                    raise RemoteError(url, f"no filesystem for {scheme}:// is installed ({e}); "
                                           f"pip install {'s3fs' if scheme == 's3' else 'gcsfs' if scheme in ('gs', 'gcs') else 'adlfs' if scheme in ('az', 'abfs') else 'aiohttp'}") from None
            _FS[key] = fs
    path = url if scheme in ("http", "https") else url.split("://", 1)[1]
    return fs, path


_CLIENTS: dict = {}


def s3_client():
    """A boto3 S3 client for the current endpoint (one per process and endpoint), for the requests that need
    headers s3fs does not pass on: conditional PUT/DELETE of the store on object storage (index/store/storefs.py).
    botocore's own retries are off: :func:`retrying` is the one retry loop, so a conditional PUT retried after a
    dropped connection is recognised as such."""
    import boto3
    from botocore.config import Config
    key = endpoint()
    with _FS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = boto3.client("s3", endpoint_url=key, config=Config(retries={"max_attempts": 1}))
            _CLIENTS[key] = client
    return client


def _info(url: str) -> dict:
    """The object's metadata from the server (never from a listing cached earlier in this process)."""
    fs, path = filesystem(url)
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache(path)
    return retrying(lambda: fs.info(path), url)


def _url(scheme: str, path: str) -> str:
    return path if scheme in ("http", "https") else f"{scheme}://{path}"


# ------------------------------------------------------------------------------------------ errors
def reason_of(e: BaseException) -> str:
    """The error row's reason for an exception from the filesystem layer."""
    text = f"{type(e).__name__}: {e}"
    code = ""
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        code = str(resp.get("Error", {}).get("Code", ""))
    if code in ("PreconditionFailed", "412"):
        return "object changed while it was read (its ETag changed)"
    if isinstance(e, FileNotFoundError) or code in ("NoSuchKey", "NoSuchBucket", "404"):
        return "object not found"
    if isinstance(e, PermissionError) or code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return "access denied (check the credentials and the bucket policy)"
    if _throttled(e):
        return f"throttled by the server, still after {ATTEMPTS} attempts"
    if _transient(e):
        return f"connection lost ({text[:160]})"
    return f"cannot read it ({text[:200]})"


def _throttled(e: BaseException) -> bool:
    resp = getattr(e, "response", None)
    code = str(resp.get("Error", {}).get("Code", "")) if isinstance(resp, dict) else ""
    return code in ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503",
                    "TooManyRequests", "429") or "SlowDown" in str(e) or "Please reduce your request rate" in str(e)


def _transient(e: BaseException) -> bool:
    if isinstance(e, (FileNotFoundError, PermissionError)):
        return False
    if _throttled(e) or isinstance(e, (ConnectionError, TimeoutError)):
        return True
    name = type(e).__name__
    return any(k in name for k in ("Connection", "Timeout", "EndpointConnection", "ReadTimeout",
                                   "IncompleteRead", "ProtocolError", "ResponseStreamingError",
                                   "ClientPayloadError", "ServerDisconnected"))


def retrying(fn, url: str, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S, sleep=time.sleep):
    """``fn()``, retried with exponential backoff (and jitter) while it fails with throttling or a dropped
    connection; any other failure, or the last one, raises :class:`RemoteError` with the reason."""
    for i in range(attempts):
        try:
            return fn()
        except RemoteError:
            raise
        except Exception as e:  # noqa: BLE001 - classified below
            if not _transient(e) or i == attempts - 1:
                raise RemoteError(url, reason_of(e)) from None
            sleep(backoff_s * (2 ** i) * (0.5 + random.random()))
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------- listing
@dataclass
class RemoteObject:
    url: str
    size: "int | None" = None
    etag: "str | None" = None         # ETag, or the modification time when the server gives no ETag


def _identity(info: dict) -> "str | None":
    for k in ("ETag", "etag", "md5Hash", "md5", "generation", "LastModified", "mtime", "last_modified"):
        if info.get(k) is not None:
            return str(info[k]).strip('"')
    return None


def head(url: str) -> RemoteObject:
    """The object at ``url`` as the server describes it now: its size and identity (ETag or modification time)."""
    info = _info(url)
    return RemoteObject(url, info.get("size"), _identity(info))


def _find(fs, scheme: str, prefix: str) -> dict:
    """name → info of every object under ``prefix``. On S3 with a synchronous boto3 client (s3fs < 0.5) one
    flat ListObjectsV2 listing (1 request per 1,000 objects; s3fs' own ``find`` lists folder by folder)."""
    client = getattr(fs, "s3", None)
    if scheme == "s3" and client is not None and hasattr(client, "get_paginator"):
        bucket, _, key = prefix.partition("/")
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/" if key else ""):
            for o in page.get("Contents", []):
                out[f"{bucket}/{o['Key']}"] = {"type": "file", "size": o["Size"], "ETag": o.get("ETag"),
                                               "LastModified": o.get("LastModified")}
        return out
    return fs.find(prefix, detail=True)


def list_remote(spec: str, video_name, skipped: "Counter | None" = None) -> "list[RemoteObject]":
    """Objects named by ``spec`` (see the module doc). ``video_name(path)`` says whether a listed name has a
    video extension; ``skipped`` counts what a prefix or glob left out, by reason. Raises RemoteError when a
    prefix holds no object or cannot be listed."""
    import glob as globmod
    skipped = skipped if skipped is not None else Counter()
    scheme = url_scheme(spec)
    fs, path = filesystem(spec)
    if scheme in ("http", "https"):
        return [RemoteObject(spec)]
    out = []
    if globmod.has_magic(path):
        found = retrying(lambda: fs.glob(path, detail=True), spec)
        prefix = path.split("*")[0].split("?")[0].split("[")[0].rsplit("/", 1)[0]
    else:
        found = None
        prefix = path.rstrip("/")
        if not path.endswith("/"):
            try:
                info = _info(spec)
            except RemoteError:
                info = None
            if info is None or info.get("type") != "directory":   # one object (kept even if missing)
                return [RemoteObject(spec, info.get("size") if info else None, _identity(info) if info else None)]
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache(prefix)
        found = retrying(lambda: _find(fs, scheme, prefix), spec)
        if not found:
            raise RemoteError(spec, "no objects under this prefix; check the bucket and prefix "
                                    f"(endpoint: {endpoint() or 'the default for ' + scheme})")
    for name in sorted(found):
        info = found[name]
        if info.get("type") == "directory":
            continue
        rel = name[len(prefix):].lstrip("/") if name.startswith(prefix) else posixpath.basename(name)
        if any(part.startswith(".") for part in rel.split("/")):
            skipped["hidden"] += 1
        elif not video_name(name):
            skipped["not video files (by extension)"] += 1
        else:
            out.append(RemoteObject(_url(scheme, name), info.get("size"), _identity(info)))
    return out


# --------------------------------------------------------------------------------------- streaming
def content_id(url: str) -> str:
    """BLAKE2b-128 of the object's bytes: the same id ``index.store.ids.video_id`` gives the same bytes on disk. Read
    in ranged GETs by the same reader the decoders use (``engine.sources.ranged.RemoteSource``: pinned to the object's
    ETag, a dropped connection resumed at the byte it reached, a stalled read an error), one block at a time."""
    from .ranged import BLOCK_BYTES, RemoteSource
    return RemoteSource(url, cache_bytes=2 * BLOCK_BYTES).finish()


def spool_limit() -> int:
    from engine.settings import Settings
    return int(Settings.from_env().spool_max_gb * 2**30)


def read_mode() -> str:
    """``BIKE_REMOTE_READ``: "stream" (default: in-process decoders read ranged GETs) or "spool" (always a
    local spool file, the older path)."""
    from engine.settings import Settings
    mode = Settings.from_env().remote_read
    return mode if mode in ("stream", "spool") else "stream"


@contextmanager
def spooled(url: str, size: "int | None" = None, source=None):
    """A local copy of the object for a decoder that reads files, deleted on exit (the spool is bounded: one
    file per decode in flight, none larger than ``BIKE_SPOOL_MAX_GB``). Written through ``source`` (a
    ``engine.sources.ranged.RemoteSource``, made here when not given), which hashes it on the way. Raises
    :class:`RemoteError`."""
    from engine.video.types import ReadError

    from .ranged import BLOCK_BYTES, RemoteSource
    src = source if source is not None else RemoteSource(url, cache_bytes=2 * BLOCK_BYTES)
    if src.size > spool_limit():
        raise RemoteError(url, f"object of {src.size / 2**30:.1f} GiB is larger than the local spool allows "
                               "(BIKE_SPOOL_MAX_GB)")
    from engine.settings import Settings
    folder = Settings.from_env().spool_dir
    suffix = posixpath.splitext(url.split("?", 1)[0])[1][:16]
    try:
        fd, tmp = tempfile.mkstemp(prefix="bike-spool-", suffix=suffix, dir=folder)
    except OSError as e:
        raise RemoteError(url, f"cannot create a spool file in {folder or tempfile.gettempdir()} on this node: "
                               f"{e.strerror or e} (BIKE_SPOOL_DIR)") from None
    try:
        with os.fdopen(fd, "wb") as f:
            reader = src.open()
            try:
                while block := reader.read(src.block):
                    f.write(block)
            except ReadError as e:
                raise RemoteError(url, e.reason) from None
        if size is not None and src.size != size:
            raise RemoteError(url, f"object changed while it was read ({src.size} bytes, listed as {size})")
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)


def decode_remote(url: str, decode, **kwargs):
    """``decode(source, **kwargs)`` (jobs.tag.decode.decode_video) over the object at ``url``: a
    ``engine.sources.ranged.RemoteSource`` for a decoder that reads byte sources, else a spooled local copy (see the module
    doc). Yields decode's messages; the "end" message also carries ``streamed`` (``RemoteSource.stats``:
    the content id, None when the bytes could not all be read, and the size/ETag it belongs to). A failure
    to fetch the object yields the same head/end messages as an undecodable file, with that reason; a video
    whose bytes did not all arrive is an error even when the part that did decoded."""
    from engine.video import get_decoder

    from .ranged import RemoteSource
    t0 = time.perf_counter()
    src = None
    try:
        src = RemoteSource(url)
        dec = get_decoder(kwargs.get("decoder"))
        if read_mode() == "stream" and dec.reads_sources:
            for msg in decode(src, **kwargs):
                yield _ended(msg, src) if isinstance(msg, dict) and msg.get("kind") == "end" else msg
            return
        with spooled(url, source=src) as local:
            for msg in decode(local, **kwargs):
                yield _ended(msg, src) if isinstance(msg, dict) and msg.get("kind") == "end" else msg
    except RemoteError as e:
        stats = src.stats(None) if src is not None else None
        yield {"kind": "head", "info": None, "error": e.reason}
        yield {"kind": "end", "clips": 0, "error": e.reason, "decode_s": time.perf_counter() - t0,
               "streamed": stats}


def _ended(msg: dict, src) -> dict:
    """The decode's "end" message with the content id (or the read failure that replaces its outcome)."""
    msg = dict(msg)
    content_id = None
    if src.failure:
        msg["error"] = src.failure
    else:
        try:
            content_id = src.finish()
        except RemoteError as e:
            msg["error"] = e.reason
    msg["streamed"] = src.stats(content_id)
    return msg


# --------------------------------------------------------------------------------------- identities
def pending_id(url: str) -> str:
    """The provisional id of an object whose content id its decode task will compute (``PENDING`` + a hash
    of the URL); never stored: the driver replaces it (jobs/tag/tag.py)."""
    return PENDING + hashlib.blake2b(url.encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()
