"""Where a store's files live: a local directory or an object-storage prefix, behind one small interface.

The store (index/store/core.py), its remembered-id caches (index/store/idcache.py) and the vector index (index/search/vectors.py)
name their files by *keys* relative to the store's root (``labels/<batch>.parquet``, ``_commits/<batch>.json``)
and do every file operation through one of these two classes:

* :class:`LocalFS`: today's behaviour. Whole-file writes go to a temporary name, are fsynced and renamed into
  place; create-if-absent is a hard link of the finished temporary file (fails when the name exists).
* :class:`ObjectFS`: ``s3://bucket/prefix`` (any S3-compatible server: ``AWS_ENDPOINT_URL`` / ``--endpoint``,
  credentials as for object-storage sources, engine/sources/remote.py). There is no rename and no flock, but a
  PUT is visible whole or not at all, and the server evaluates conditions atomically: create-if-absent is a PUT with
  ``If-None-Match: *``, replace-if-unchanged a PUT with ``If-Match: <ETag>``, delete-if-unchanged a DELETE with
  ``If-Match`` (a 412 answer means someone else got there first). Requests that fail on throttling or a
  dropped connection are retried with backoff (``engine.sources.remote.retrying``).

A *tag* is what "unchanged" is compared against: the ETag on object storage, a (size, mtime, inode) triple on
disk. Operations::

    list(folder)            {name: size} of the files directly in a folder ({} when there is none)
    list_tags(folder)       {name: tag} of the same files (a change stamp: bike serve's live refresh)
    read(key)               bytes (FileNotFoundError when absent);  read_tagged(key, limit) → (bytes, tag) | None
    download(key, dest)     object storage only: stream an object into a local file
    copy(key, to)           object storage only: a server-side copy (``bike repair``'s quarantine)
    write(key, data)        whole and atomic (replaces)
    write_file(key, fn)     fn(local temporary path) writes a file, which is then published whole under key
    create(key, data)       → tag, or None when key exists (conditional)
    replace(key, data, tag) → new tag, or None when key changed since ``tag`` was read (conditional)
    delete(key, tag=None)   → False when it was already gone or (with ``tag``) changed
    size(key)               bytes, or None when absent
    arrow, arrow_path(key)  a pyarrow filesystem (None locally: plain paths) and the path inside it

Semantics are in docs/storage.md ("The store on object storage").
"""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path, PurePosixPath

from engine.sources.remote import STORE_SCHEMES, is_remote, url_scheme


class StoreLocation(str):
    """The display name of an object-storage store root (``s3://bucket/prefix``); ``/`` joins like a path, so
    messages that say ``store.root / "_commits"`` read the same for both kinds of store."""

    def __truediv__(self, other) -> "StoreLocation":
        return StoreLocation(f"{self.rstrip('/')}/{str(other).lstrip('/')}")

    @property
    def name(self) -> str:
        return PurePosixPath(self.split("://", 1)[-1]).name


def is_object_url(root) -> bool:
    """Whether ``root`` names an object-storage prefix (a store on S3) rather than a local directory
    (engine.sources.remote.url_scheme decides what a URL is)."""
    return is_remote(root, STORE_SCHEMES)


def unsupported_scheme(root) -> "str | None":
    """Why ``root`` cannot be a store (a URL scheme other than ``s3://``), or None."""
    s = str(root)
    scheme = url_scheme(s)
    if scheme is not None and scheme not in STORE_SCHEMES:
        return f"{s}: a store can be a local directory or s3://bucket/prefix/ (not {s.split('://', 1)[0]}://)"
    return None


# ---------------------------------------------------------------------------------------------------- local
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")


def atomic_write(path: "str | os.PathLike", write) -> None:
    """Call ``write(tmp)`` with a temporary path (str) beside ``path``, fsync it, then rename it over ``path``:
    readers see the old file or the whole new one, never half a file. The temporary name ends in ``.tmp``."""
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _local_tag(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


class LocalFS:
    """A store in a local directory (see the module docstring)."""

    remote = False
    arrow = None                     # pyarrow reads plain paths

    def __init__(self, root: "str | os.PathLike"):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    url = path
    arrow_path = path

    def list(self, folder: str) -> "dict[str, int]":
        d = self.root / folder
        out = {}
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        for e in entries:
            try:
                if e.is_file():
                    out[e.name] = e.stat().st_size
            except FileNotFoundError:
                continue
        return out

    def list_tags(self, folder: str) -> "dict[str, str]":
        out = {}
        for name in self.list(folder):
            try:
                out[name] = _local_tag(os.stat(self.root / folder / name))
            except FileNotFoundError:
                continue
        return out

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def read_tagged(self, key: str, limit: "int | None" = None) -> "tuple[bytes, str] | None":
        """(bytes, tag) of a file, or None when absent; with ``limit`` at most ``limit + 1`` bytes are read
        (a longer file is longer than ``limit``: the caller refuses it without holding it)."""
        p = self.root / key
        try:
            with open(p, "rb") as f:
                return f.read(-1 if limit is None else limit + 1), _local_tag(os.fstat(f.fileno()))
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        p = self.root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, lambda tmp: Path(tmp).write_bytes(data))

    def write_file(self, key: str, fn) -> None:
        p = self.root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, fn)

    def create(self, key: str, data: bytes) -> "str | None":
        p = self.root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_beside(p)
        try:
            tmp.write_bytes(data)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            try:
                os.link(tmp, p)          # atomic, and fails when the name exists
            except FileExistsError:
                return None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(p.parent)
        return _local_tag(os.stat(p))

    def replace(self, key: str, data: bytes, tag: str) -> "str | None":
        """Local writers are serialised by the store's flock; this compares and writes without a gap only
        as far as that lock makes it so."""
        p = self.root / key
        try:
            if _local_tag(os.stat(p)) != tag:
                return None
        except FileNotFoundError:
            return None
        self.write(key, data)
        return _local_tag(os.stat(p))

    def delete(self, key: str, tag: "str | None" = None) -> bool:
        p = self.root / key
        try:
            if tag is not None and _local_tag(os.stat(p)) != tag:
                return False
            p.unlink()
            return True
        except FileNotFoundError:
            return False

    def size(self, key: str) -> "int | None":
        try:
            return (self.root / key).stat().st_size
        except FileNotFoundError:
            return None


# ----------------------------------------------------------------------------------------- object storage
def _code(e: BaseException) -> str:
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        return str(resp.get("Error", {}).get("Code", "")) or str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return ""


def _precondition_failed(e: BaseException) -> bool:
    return _code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def _not_found(e: BaseException) -> bool:
    return isinstance(e, FileNotFoundError) or _code(e) in ("NoSuchKey", "404", "NotFound")


class ObjectFS:
    """A store under an object-storage prefix, ``s3://bucket/prefix`` (see the module docstring). Uses the
    boto3 client of engine/sources/remote.py (endpoint, credentials, retries) for every request, and pyarrow
    reads shards through the same s3fs filesystem as object-storage sources."""

    remote = True

    def __init__(self, url: str):
        from engine.sources import remote
        self._remote = remote
        rest = str(url).split("://", 1)[1].strip("/")
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise ValueError(f"{url}: no bucket named (give s3://bucket/prefix/)")
        self.prefix = f"{prefix}/" if prefix else ""
        self.root = StoreLocation(f"s3://{rest}")
        self.client = remote.s3_client()
        self._arrow = None

    # names
    def key(self, key: str) -> str:
        return self.prefix + key

    def url(self, key: str) -> StoreLocation:
        return self.root / key

    path = url

    @property
    def arrow(self):
        """A pyarrow filesystem over the same s3fs filesystem as object-storage sources (engine/sources/)."""
        if self._arrow is None:
            from pyarrow.fs import FSSpecHandler, PyFileSystem
            fs, _ = self._remote.filesystem(str(self.root))
            self._arrow = PyFileSystem(FSSpecHandler(fs))
        return self._arrow

    def arrow_path(self, key: str) -> str:
        return f"{self.bucket}/{self.key(key)}"

    def _call(self, what: str, key: str, fn):
        return self._remote.retrying(fn, f"{self.url(key)} ({what})")

    # operations
    def list(self, folder: str) -> "dict[str, int]":
        return {n: s for n, (s, _) in self._list(folder).items()}

    def list_tags(self, folder: str) -> "dict[str, str]":
        return {n: t for n, (_, t) in self._list(folder).items()}

    def _list(self, folder: str) -> "dict[str, tuple[int, str]]":
        base = self.key(folder.strip("/") + "/")

        def run():
            out = {}
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base,
                                                                          Delimiter="/")
            for page in pages:
                for o in page.get("Contents", []):
                    name = o["Key"][len(base):]
                    if name:
                        out[name] = (int(o["Size"]), str(o.get("ETag", "")))
            return out
        return self._call("list", folder, run)

    def read(self, key: str) -> bytes:
        got = self.read_tagged(key)
        if got is None:
            raise FileNotFoundError(str(self.url(key)))
        return got[0]

    def read_tagged(self, key: str, limit: "int | None" = None) -> "tuple[bytes, str] | None":
        def run():
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
            except Exception as e:  # noqa: BLE001 - absent is an answer, the rest is retried or raised
                if _not_found(e):
                    return None
                raise
            body = r["Body"]
            try:
                return body.read(None if limit is None else limit + 1), str(r.get("ETag", ""))
            finally:
                body.close()
        return self._call("read", key, run)

    def _put(self, key: str, body, **cond) -> "str | None":
        """PUT with an optional condition → new ETag, or None on 412. A retried request whose first attempt
        did land answers 412 too; then the object is read back and counts as ours when its bytes are."""
        attempts = {"n": 0}

        def run():
            attempts["n"] += 1
            if hasattr(body, "seek"):
                body.seek(0)
            try:
                r = self.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=body, **cond)
            except Exception as e:  # noqa: BLE001 - a failed condition is an answer
                if _precondition_failed(e):
                    return None
                raise
            return str(r.get("ETag", ""))
        tag = self._call("write", key, run)
        if tag is None and attempts["n"] > 1:            # rare: compare the whole object with what we sent
            if hasattr(body, "seek"):
                body.seek(0)
            sent = body if isinstance(body, bytes) else body.read()
            now = self.read_tagged(key)
            if now is not None and now[0] == sent:
                return now[1]
        return tag

    def write(self, key: str, data: bytes) -> None:
        self._put(key, data)

    def copy(self, key: str, to: str) -> None:
        """Server-side copy of an object to another key of the store (``bike repair``'s quarantine)."""
        self._call("copy", key, lambda: self.client.copy_object(
            Bucket=self.bucket, Key=self.key(to), CopySource={"Bucket": self.bucket, "Key": self.key(key)}))

    def download(self, key: str, dest: "str | os.PathLike") -> None:
        """Stream an object into the local file ``dest`` (replaced whole; large objects in ranged parts)."""
        dest = Path(dest)
        tmp = _tmp_beside(dest)
        try:
            self._call("read", key, lambda: self.client.download_file(self.bucket, self.key(key), str(tmp)))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def write_file(self, key: str, fn, create: bool = True) -> None:
        """``fn(tmp)`` writes a local temporary file, which is uploaded in one PUT. With ``create`` (the store's
        immutable names) the PUT is conditional: an existing object is never overwritten."""
        fd, tmp = tempfile.mkstemp(prefix="bike-upload-", suffix=".tmp")
        os.close(fd)
        try:
            fn(tmp)
            with open(tmp, "rb") as f:
                tag = self._put(key, f, **({"IfNoneMatch": "*"} if create else {}))
            if tag is None:
                raise FileExistsError(f"{self.url(key)}: exists already (immutable names are written once)")
        finally:
            Path(tmp).unlink(missing_ok=True)

    def create(self, key: str, data: bytes) -> "str | None":
        return self._put(key, data, IfNoneMatch="*")

    def replace(self, key: str, data: bytes, tag: str) -> "str | None":
        return self._put(key, data, IfMatch=tag)

    def delete(self, key: str, tag: "str | None" = None) -> bool:
        def run():
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key(key), **({"IfMatch": tag} if tag else {}))
            except Exception as e:  # noqa: BLE001
                if _precondition_failed(e) or _not_found(e):
                    return False
                raise
            return True
        return self._call("delete", key, run)

    def size(self, key: str) -> "int | None":
        def run():
            try:
                return int(self.client.head_object(Bucket=self.bucket, Key=self.key(key))["ContentLength"])
            except Exception as e:  # noqa: BLE001
                if _not_found(e):
                    return None
                raise
        return self._call("size", key, run)

    def exists(self) -> bool:
        """Whether anything is stored under the prefix (one listing request of at most one key)."""
        r = self._call("list", "", lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix,
                                                                         MaxKeys=1))
        return bool(r.get("KeyCount") or r.get("Contents"))

    def bucket_problem(self) -> "str | None":
        """Why the bucket cannot hold a store (missing, denied), or None."""
        try:
            self._call("bucket", "", lambda: self.client.head_bucket(Bucket=self.bucket))
        except self._remote.RemoteError as e:
            return f"bucket {self.bucket}: {e.reason}"
        return None


def filesystem_for(root) -> "LocalFS | ObjectFS":
    """The seam for a store root: a :class:`~index.store.core.Store` (its own), an ``s3://`` URL or a local path."""
    fs = getattr(root, "fs", None)
    if fs is not None:
        return fs
    return ObjectFS(str(root)) if is_object_url(root) else LocalFS(Path(root).expanduser())
