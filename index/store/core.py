"""The store: one directory of Parquet shards with all-or-nothing batches, readable by DuckDB.

Layout::

    STORE/<table>/<batch>.parquet     one shard per table per committed batch (tables: index/store/schema.py)
    STORE/_commits/<batch>.json       the commit record: model_id, video ids, row counts; written LAST
    STORE/<table>/.<batch>.tmp        a shard being written (never read)

Exactly once. :meth:`Store.write_batch` writes every table's shard under a temporary name, fsyncs it and
renames it into place, and only then writes the batch's commit record (itself via temp name + rename).
Readers only ever see files of committed batches, so a batch is visible entirely or not at all, and a
file is never visible half-written. :meth:`Store.recover` (run when a writer opens the store) deletes
temporary files and shards of batches that never committed (a crash mid-batch), and finishes pending
replacements. A batch written with ``replace=True`` (``bike tag --force``) supersedes the rows that older
batches hold for the same (model_id, video): after its commit those rows are removed from the older shards
(each shard rewritten atomically); a crash in between is finished by the next :meth:`recover`.

One writer at a time: a writing job holds :meth:`Store.lock` from its :meth:`recover` to its last batch
(``recover`` deletes shards that are not committed yet, which would include a live writer's). Readers
(``bike sql``, search) need no lock.

Integrity. Each commit record holds, per shard, its row count, byte size and SHA-256 (``files``). Readers
check every committed shard cheaply when they load the commit records (present, same byte size, a Parquet
footer); a batch that fails is *damaged*: it is left out of every read (SQL views, search, reruns) with one
warning naming the batch and the way out (``bike repair``), instead of failing every query. An unreadable
commit record (or one that fails the record schema, index/store/validate.py) is damaged the same way, and its shards
are never deleted as "uncommitted" (only ``bike repair`` moves them, into ``STORE/_quarantine/``). A shard
corrupted without changing its size passes these checks; a read that trips over it finds it with the full test
and leaves its batch out from then on (:meth:`Store.retry_without_damaged`). ``bike check`` (index/store/check.py)
verifies checksums and row counts in full.

Compaction (index/store/compact.py, ``bike compact``) merges small batches into one batch per model behind ONE new
commit record that lists the merged batches under ``compacted`` (with ``files`` stats like any record). From its
commit on, :meth:`Store.commits` hides the merged batches (:attr:`Store.superseded`): every row is read once.
A record is trusted to hide batches only when it holds their rows (:func:`trusted_compactions`: same model, row
counts adding up, its shards present with their recorded sizes); a forged one is a damaged batch and hides
nothing. Their files stay a grace period for readers that listed them before, then compaction deletes them
(only behind a compaction verified in full); meanwhile they are neither damaged nor "files of no batch" for
``recover``, ``bike check`` and ``bike repair``.

Readers' DuckDB connections are sandboxed in DuckDB's own configuration (:func:`sandboxed_duckdb`): they may
read the store's committed shards and nothing else, never write a file, never install or load an extension,
and the settings are locked.

Object storage (``Store("s3://bucket/prefix/")``; docs/storage.md "The store on object storage"). Every file
operation goes through index/store/storefs.py. Object storage has no rename and no flock, so the protocol differs
there. Shards are uploaded whole under names that are never reused (create-if-absent),
and a replacement writes the filtered rows of an older batch under a new name that the rewritten record names
(``shards``). Commit records are created with a conditional PUT, and rewritten only if unchanged since they were
read. The writer lock is a lease object, ``_lock.json`` (index/store/lease.py): renewed while held, checked before
every commit, and taken over when it has expired or its holder's pid is gone on this host. :meth:`Store.recover`
runs only under the lease, and deletes every shard that no record names. Readers find shards only through
commit records, check sizes from one listing per table folder, and DuckDB reads registered Arrow datasets
instead of files. Compaction is unchanged in principle (its merged shards are new names, its record a
conditional create, and its grace period is what makes deleting the merged files safe); ``bike repair`` copies
a damaged batch into ``_quarantine/`` and then deletes its record.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from index.store import validate
from .parquetio import read_parquet
from .schema import DERIVED, TABLES
from .storefs import LocalFS, ObjectFS, atomic_write, is_object_url, unsupported_scheme  # noqa: F401 (atomic_write: API)

COMMITS = "_commits"
#: The largest derived-table file (``_dedup/...``) a reader opens.
DERIVED_MAX_BYTES = 1 << 30
QUARANTINE = "_quarantine"
MARKER = "_store.json"                 # object storage: written when the store is created (a prefix is no folder)
SHARD_NAME = validate.SHARD_NAME      # a shard file name a record may give under ``shards`` (index/store/validate.py)


class StoreError(Exception):
    """A store directory that cannot be used; the message names it and says why."""


def stream_stats(f) -> dict:
    """``{"bytes": size, "sha256": hex}`` of what a binary stream holds from where it is to its end."""
    h = hashlib.sha256()
    n = 0
    while block := f.read(1 << 20):
        h.update(block)
        n += len(block)
    return {"bytes": n, "sha256": h.hexdigest()}


def file_stats(path: "str | os.PathLike") -> dict:
    """``{"bytes": size, "sha256": hex}`` of a file (what a commit record keeps per shard)."""
    with open(path, "rb") as f:
        return stream_stats(f)


def listed_shard_problem(size: "int | None", stats: "dict | None") -> "str | None":
    """Why a shard of ``size`` bytes (None: absent) is unusable, from its size alone against the commit record's
    (a folder listing is enough: object storage), or None when it looks whole."""
    if size is None:
        return "shard missing"
    if stats and stats.get("bytes") is not None:
        if size != stats["bytes"]:
            return f"shard is {size} bytes, its commit record says {stats['bytes']} (truncated or overwritten)"
        return None                                   # same size as written: `bike check` compares checksums
    return f"shard is {size} bytes: not a Parquet file" if size < 12 else None


def quick_shard_problem(path: Path, stats: "dict | None") -> "str | None":
    """Why the shard at ``path`` is unusable, from cheap facts only (exists, byte size against the commit
    record: :func:`listed_shard_problem`; for records without sizes, also the Parquet magic and footer) →
    reason, or None when it looks whole. ``bike check`` does the full test."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError as e:
        return f"shard unreadable: {e.strerror or e}"
    why = listed_shard_problem(size, stats)
    if why or (stats and stats.get("bytes") is not None):
        return why
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(size - 8)
            tail = f.read(8)
    except OSError as e:
        return f"shard unreadable: {e.strerror or e}"
    footer = int.from_bytes(tail[:4], "little")
    if head != b"PAR1" or tail[4:] != b"PAR1" or footer + 12 > size:
        return "shard is not a whole Parquet file (no footer: truncated?)"
    return None


def sandboxed_duckdb(allowed_paths, memory_limit: "int | None" = None, threads: "int | None" = None) -> "object":
    """An in-memory DuckDB connection locked down in DuckDB's own configuration: it can read exactly the
    files in ``allowed_paths`` and nothing else (``enable_external_access = false`` + ``allowed_paths``),
    write no file (COPY, EXPORT, ATTACH, spilling: ``temp_directory = ''``, ``max_temp_directory_size``
    0), neither install nor load extensions (autoinstall/autoload off), and no statement can change these
    settings (``lock_configuration``). ``memory_limit`` (bytes) and ``threads``, when given, are set before
    the lock (index/store/sqlbox.py runs user SQL so). The statement-type check of ``index.store.sql`` is a second layer
    on top."""
    import duckdb
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    try:
        con.execute("SET temp_directory = ''")
        con.execute("SET max_temp_directory_size = '0KiB'")
        if memory_limit is not None:
            con.execute(f"SET memory_limit = '{max(1, int(memory_limit) >> 10)}KiB'")
        if threads is not None:
            con.execute(f"SET threads = {max(1, int(threads))}")
        con.execute("SET allowed_paths = $p", {"p": [str(p) for p in allowed_paths]})
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


_DUCK = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.int16(): "SMALLINT",
         pa.float64(): "DOUBLE", pa.float32(): "FLOAT", pa.float16(): "FLOAT", pa.bool_(): "BOOLEAN"}


def _duck_type(t: pa.DataType) -> str:
    """DuckDB type of an Arrow type (for the typed empty views of tables with no rows yet)."""
    if pa.types.is_list(t):
        return _duck_type(t.value_type) + "[]"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    return _DUCK[t]


def _no_half(t: pa.DataType) -> pa.DataType:
    """``t`` with float16 as float32 (DuckDB's Arrow scan has no half floats; its Parquet reader widens them)."""
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_list(t):
        return pa.list_(_no_half(t.value_type))
    return t


def _duck_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(_no_half(f.type)) for f in schema])


#: The Arrow datasets :meth:`Store.connect` registered on each of its connections (object storage), by name.
_REGISTERED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cursor(con):
    """A cursor of a :meth:`Store.connect` connection, for another thread. A DuckDB cursor shares the
    connection's database (its views) but not the Python objects registered on the connection, and on object
    storage the views select from registered Arrow datasets: the cursor gets the same ones registered again
    (same names, same objects: the views of this generation resolve to the same shards)."""
    cur = con.cursor()
    for name, dataset in _REGISTERED.get(con, {}).items():
        cur.register(name, dataset)
    return cur


def compaction_problem(rec: dict, by_name: "dict[str, dict]") -> "str | None":
    """Why the compacted record ``rec`` may not hide the batches it names under ``compacted`` (of which
    ``by_name`` holds the readable records), or None. It may when every merged batch still on record is of its
    model and, per table, their rows add up to no more than its own (a ``--force`` replacement removes rows
    from both: :meth:`Store._supersede`), and when each of its tables with rows has a recorded byte size (so
    that "its shards exist with the recorded sizes" is checked by every reader). A well-formed record with
    ``"tables": {}`` naming real batches fails here: it would hide their rows and let the clean-up delete
    them."""
    present = [by_name[b] for b in rec.get("compacted", ()) if b in by_name]
    if not present:
        return None
    for m in present:
        if m["model_id"] != rec["model_id"]:
            return (f"forged or damaged compaction record: it names batch {m['batch']} of another model; "
                    "readers ignore it and read the batches it names")
    files = rec.get("files") or {}
    for table in sorted({t for m in present for t in m["tables"]} | set(rec["tables"])):
        need = sum(m["tables"].get(table, 0) for m in present)
        have = rec["tables"].get(table, 0)
        if need > have:
            return (f"forged or damaged compaction record: it hides batches whose rows it does not hold ({table}: "
                    f"{have} rows, the batches it names hold {need}); readers ignore it and read those batches")
        if have and (files.get(table) or {}).get("bytes") is None:
            return (f"forged or damaged compaction record: no recorded size for its {table} shard; readers "
                    "ignore it and read the batches it names")
    return None


def trusted_compactions(records: "list[dict]", problem) -> "tuple[set[str], dict[str, str]]":
    """(batches hidden by a trusted compaction, {compacted batch: why it is not trusted}) among ``records``.
    A compaction is trusted when :func:`compaction_problem` finds nothing and it is whole: ``problem(rec)``
    (the cheap shard checks) finds nothing, or it is itself hidden by a trusted compaction (which holds its
    rows; the clean-up deletes a merged compaction's shards only after its own merged batches are gone).
    Merged batches sort before the compaction that names them, so one pass from the newest record decides."""
    by_name = {r["batch"]: r for r in records}
    hidden: set[str] = set()
    untrusted: dict[str, str] = {}
    for rec in sorted(records, key=lambda r: r["batch"], reverse=True):
        if not rec.get("compacted"):
            continue
        why = compaction_problem(rec, by_name)
        if why:
            untrusted[rec["batch"]] = why
        elif rec["batch"] in hidden or not problem(rec):
            hidden.update(rec["compacted"])
    return hidden, untrusted


def read_error(e: "BaseException | None") -> bool:
    """Whether ``e`` may come from reading a damaged shard (rather than from the query or the caller)."""
    if e is None or isinstance(e, StoreError):
        return False
    if isinstance(e, (pa.ArrowException, OSError)):
        return True
    try:
        import duckdb
    except ImportError:
        return False
    user = tuple(getattr(duckdb, n) for n in (
        "ParserException", "BinderException", "CatalogException", "SyntaxException", "ConversionException",
        "TypeMismatchException", "OutOfRangeException", "InterruptException", "PermissionException",
        "NotImplementedException", "ConstraintException", "OutOfMemoryException") if hasattr(duckdb, n))
    return isinstance(e, duckdb.Error) and not isinstance(e, user)


class WriterLock:
    """``flock`` on ``STORE/.writer.lock``; the file keeps the holder's pid for the error message."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: "int | None" = None

    def __enter__(self) -> "WriterLock":
        import fcntl
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(f"{self.path.parent}: another job (pid {holder}) is writing to this store; wait "
                             "for it to finish, or use another --store") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)          # closing releases the flock
            self._fd = None


class Store:
    """A store: a local directory, or an object-storage prefix ``s3://bucket/prefix`` (index/store/storefs.py; the
    protocol on object storage is in docs/storage.md). ``Store(path, create=True)`` makes it when missing.
    ``warn`` receives the one-line warnings about damaged batches (default: printed to stderr as
    ``bike: warning: ...``)."""

    def __init__(self, root: "str | os.PathLike", create: bool = False, warn=None):
        self._commits: "list[dict] | None" = None
        self._records: "list[dict]" = []
        self.damaged: "dict[str, str]" = {}          # batch → why it is left out of reads
        self.superseded: "set[str]" = set()          # batches merged by a compaction (index/store/compact.py): hidden
        self.unreadable: "dict[str, str]" = {}       # batch → why its commit record cannot be used
        self.forged: "dict[str, str]" = {}           # compacted batch → why it may not hide what it names
        self._bad_shards: "dict[tuple, str]" = {}    # (shard key, size) → why it failed to decode (kept on refresh)
        self._warned: set = set()
        self._tags: "dict[str, str]" = {}            # batch → tag of its record as read (conditional rewrites)
        self._raw: "dict[str, tuple]" = {}           # object storage: record name → (bytes, ETag) last read
        self._lease = None                           # the writer lease while held (object storage)
        self.warn = warn or (lambda msg: print(f"bike: warning: {msg}", file=sys.stderr, flush=True))
        why = unsupported_scheme(root)
        if why:
            raise StoreError(why)
        if is_object_url(root):
            self._open_object_store(str(root), create)
            return
        self.root = Path(root).expanduser().resolve()
        self.fs = LocalFS(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root}: exists and is not a directory; give --store a directory")
        if not self.root.exists():
            if not create:
                raise StoreError(f"{self.root}: no such store (run `bike tag ... --store {root}` first)")
            try:
                self.root.mkdir(parents=True)
            except OSError as e:
                raise StoreError(f"{self.root}: cannot create the store directory: {e.strerror}") from None
        if create:
            try:
                for name in (*TABLES, COMMITS):
                    (self.root / name).mkdir(exist_ok=True)
            except OSError as e:
                raise StoreError(f"{self.root}: cannot create the store's folders: {e.strerror}") from None
            if not os.access(self.root, os.W_OK):
                raise StoreError(f"{self.root}: store directory is not writable")

    def _open_object_store(self, url: str, create: bool) -> None:
        from engine.sources.remote import RemoteError
        try:
            self.fs = ObjectFS(url)
        except ValueError as e:
            raise StoreError(str(e)) from None
        except ImportError as e:
            raise StoreError(f"{url}: a store on object storage needs boto3 and s3fs ({e}); "
                             "pip install \"bike[remote]\"") from None
        self.root = self.fs.root
        try:
            if create:
                why = self.fs.bucket_problem()
                if why:
                    raise StoreError(f"{self.root}: cannot use this store: {why}")
                if not self.fs.exists():      # a marker, as the directory is locally: the store exists from now on
                    self.fs.create(MARKER, json.dumps({"store": "bike", "created": time.time()}).encode())
            elif not self.fs.exists():
                raise StoreError(f"{self.root}: no such store (nothing under this prefix; run "
                                 f"`bike tag ... --store {url}` first)")
        except RemoteError as e:
            raise StoreError(f"{self.root}: cannot reach the store: {e.reason}") from None

    @property
    def remote(self) -> bool:
        """Whether the store is on object storage (no flock, no rename: docs/storage.md)."""
        return self.fs.remote

    # ---- commit records ------------------------------------------------------------------------------
    def shard(self, table: str, batch: str) -> Path:
        """The path of a batch's shard under its original name (local stores; see :meth:`shard_path`)."""
        return self.fs.path(f"{table}/{batch}.parquet")

    @staticmethod
    def shard_key(table: str, rec: dict) -> str:
        """The key of a committed batch's shard of ``table``: ``<table>/<batch>.parquet``, or the name its
        record gives under ``shards`` (object storage: a replacement's filtered shard has a new name)."""
        name = (rec.get("shards") or {}).get(table) or f"{rec['batch']}.parquet"
        return f"{table}/{name}"

    def shard_path(self, table: str, rec: dict):
        """Path (local) or URL (object storage) of a committed batch's shard, for messages and :meth:`open_shard`."""
        return self.fs.path(self.shard_key(table, rec))

    def read_shard(self, table: str, rec: dict, columns=None, schema=None) -> "pa.Table | None":
        """One committed shard as Arrow (None when it is gone: rewritten away by a replacement)."""
        key = self.shard_key(table, rec)
        try:
            return read_parquet(self.fs.arrow_path(key), filesystem=self.fs.arrow, columns=columns, schema=schema)
        except FileNotFoundError:
            return None

    def open_shard(self, table: str, rec: dict) -> "pq.ParquetFile | None":
        """A committed shard as a ``pyarrow.parquet.ParquetFile`` (None when it is gone)."""
        key = self.shard_key(table, rec)
        if not self.remote:
            path = self.fs.path(key)
            return pq.ParquetFile(path) if path.exists() else None
        try:
            return pq.ParquetFile(self.fs.arrow.open_input_file(self.fs.arrow_path(key)))
        except FileNotFoundError:
            return None

    def _load_record(self, name: str, listed_tag: "str | None" = None):
        """(record or None when it vanished, tag, error or None) of ``_commits/<name>``, checked against the
        record schema (index/store/validate.py: a malformed record is an error, never a traceback). On object storage
        a record whose ETag in the listing (``listed_tag``) is the one read before is not fetched again."""
        try:
            cached = self._raw.get(name)
            if listed_tag and cached is not None and cached[1] == listed_tag:
                got = cached
            else:
                got = self.fs.read_tagged(f"{COMMITS}/{name}", limit=validate.MAX_RECORD_BYTES)
                if got is None:
                    return None, None, None
                if self.remote:
                    self._raw[name] = got
            rec = validate.commit_record(got[0], name[:-len(".json")])
            return rec, got[1], None
        except (OSError, ValueError) as e:        # Malformed is a ValueError
            why = str(e) if isinstance(e, validate.Malformed) else f"{type(e).__name__}: {e}"
            return None, None, f"commit record {self.fs.path(f'{COMMITS}/{name}')} unreadable ({why})"

    def _read_records(self) -> "tuple[list[dict], dict[str, str]]":
        """Every commit record (oldest first) and {batch: reason} of records that cannot be read. A record that
        vanishes between listing and reading (compaction's clean-up, index/store/compact.py, or ``bike repair``)
        makes the folder be listed again, so the records returned are one consistent view. On object storage
        the records are fetched a few at a time."""
        for attempt in range(5):
            out, bad, vanished = [], {}, False
            listing = self.fs.list_tags(COMMITS) if self.remote else self.fs.list(COMMITS)
            names = sorted(n for n in listing if n.endswith(".json") and not n.startswith("."))
            tagged = [(n, listing[n] if self.remote else None) for n in names]
            if self.remote and len(names) > 1:
                with ThreadPoolExecutor(min(16, len(names))) as pool:
                    loaded = list(pool.map(lambda nt: self._load_record(*nt), tagged))
            else:
                loaded = [self._load_record(*nt) for nt in tagged]
            if self.remote:
                self._raw = {n: self._raw[n] for n in names if n in self._raw}
            tags = {}
            for name, (rec, tag, err) in zip(names, loaded):
                if err is not None:
                    bad[name[:-len(".json")]] = err
                elif rec is None:
                    vanished = True                       # removed after we listed it: list again
                else:
                    out.append(rec)
                    tags[rec["batch"]] = tag
            if not vanished:
                break
        self._tags = tags
        return out, bad

    def _problem(self, rec: dict, listed: "dict | None" = None) -> "str | None":
        """Why a committed batch cannot be read (cheap checks: :func:`quick_shard_problem`; on object storage
        :func:`listed_shard_problem` with the sizes of one listing per table folder), or None."""
        for table, n in rec["tables"].items():
            if not n or table not in TABLES:
                continue
            key = self.shard_key(table, rec)
            stats = (rec.get("files") or {}).get(table)
            if listed is not None:
                if table not in listed:
                    listed[table] = self.fs.list(table)
                why = listed_shard_problem(listed[table].get(key.split("/", 1)[1]), stats)
            else:
                why = quick_shard_problem(self.fs.path(key), stats)
            if why:
                return f"{table}: {why}"
        return None

    def _scan(self) -> "tuple[list[dict], set[str], list[dict], dict[str, str]]":
        """(every readable record, superseded batches, visible undamaged records, {damaged batch: why}).
        Also sets :attr:`unreadable` and :attr:`forged`."""
        records, bad = self._read_records()
        self.unreadable = dict(bad)
        listed = {} if self.remote else None
        problems: dict[str, "str | None"] = {}

        def problem(rec: dict) -> "str | None":
            if rec["batch"] not in problems:
                problems[rec["batch"]] = self._problem(rec, listed)
            return problems[rec["batch"]]
        # A compacted batch (index/store/compact.py) names the batches it merged under ``compacted``: they are
        # superseded, but only behind a compaction that holds their rows (:func:`trusted_compactions`). Their
        # files stay a grace period for readers that listed them a moment ago, and are then deleted (shards
        # before record), so they are neither read nor checked here, and never "damaged".
        superseded, forged = trusted_compactions(records, problem)
        self.forged = {b: why for b, why in forged.items() if b not in superseded}
        good = []
        for rec in records:
            if rec["batch"] in superseded:
                continue
            why = self.forged.get(rec["batch"]) or problem(rec) or self._unreadable_shard(rec, listed)
            if why:
                bad[rec["batch"]] = why
            else:
                good.append(rec)
        bad = {b: why for b, why in bad.items() if b not in superseded}
        return records, superseded, good, bad

    def _unreadable_shard(self, rec: dict, listed: "dict | None") -> "str | None":
        """Why one of ``rec``'s shards, as it is now (same key and size), failed to decode for an earlier
        read of this Store object (:meth:`find_unreadable`), or None."""
        if not self._bad_shards:
            return None
        for table, key, size in self.shard_sizes(rec, listed):
            why = self._bad_shards.get((key, size))
            if why:
                return f"{table}: {why}"
        return None

    def shard_sizes(self, rec: dict, listed: "dict | None" = None):
        """(table, shard key, stored size or None) of each of ``rec``'s shards that holds rows: sizes from
        ``listed`` ({table: {name: size}}, one listing per table folder, filled on first use: object storage),
        else asked of the file system one by one."""
        for table, n in rec["tables"].items():
            if not n or table not in TABLES:
                continue
            key = self.shard_key(table, rec)
            if listed is not None:
                if table not in listed:
                    listed[table] = self.fs.list(table)
                yield table, key, listed[table].get(key.split("/", 1)[1])
            else:
                yield table, key, self.fs.size(key)

    def find_unreadable(self) -> "dict[str, str]":
        """After a read failed: verify every visible shard in full (``bike check``'s test: SHA-256 against the
        record, Parquet footer, row count) and leave the batches that fail out of every later read of this
        Store object, with the usual warning → {batch: why} found now. A shard corrupted without changing its
        size passes the cheap checks of :meth:`commits`; this is how a reader that trips over it goes on."""
        from .check import _shard_problem
        found: dict[str, str] = {}
        listed: dict = {}
        for rec in self.commits():
            for table, n in sorted(rec["tables"].items()):
                if not n or table not in TABLES:
                    continue
                key = self.shard_key(table, rec)
                if self.remote and table not in listed:
                    listed[table] = self.fs.list(table)
                here = listed.get(table) if self.remote else None
                why = _shard_problem(self, key, int(n), (rec.get("files") or {}).get(table), here)
                if why:
                    size = here.get(key.split("/", 1)[1]) if here is not None else self.fs.size(key)
                    self._bad_shards[(key, size)] = f"shard {why}"
                    found[rec["batch"]] = f"{table}: shard {why}"
                    break
        if found:
            self.commits(refresh=True)
        return found

    def retry_without_damaged(self, fn, attempts: int = 3, before_retry=None):
        """``fn()``; when it fails on a shard that does not decode (a Parquet, Arrow or DuckDB read error,
        also as the ``__context__`` of the error it raised), find the damaged batches (:meth:`find_unreadable`),
        which are warned about and left out from then on, and call ``fn()`` again. Errors of the caller's own
        making (a SQL syntax error, an unknown column) are raised at once, without a scan. ``before_retry()``
        runs before each new try (a caller drops what it built over the old set of batches)."""
        for _ in range(attempts):
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - classified by read_error
                if not (read_error(e) or read_error(e.__context__)) or not self.find_unreadable():
                    raise
            if before_retry is not None:
                before_retry()
        return fn()

    def commits(self, refresh: bool = False) -> "list[dict]":
        """Commit records of the committed, visible, undamaged batches, oldest first (read once, then kept up to
        date by this object's own writes; ``refresh=True`` re-reads the directory). Batches merged by a
        compaction are hidden (listed in :attr:`superseded`): each row is read once, from the compacted batch.
        A damaged batch (a shard missing, truncated or not Parquet; an unreadable record) is left out, listed
        in :attr:`damaged` and warned about once."""
        if self._commits is None or refresh:
            try:
                records, superseded, good, bad = self._scan()
                if set(bad) & {r["batch"] for r in records}:   # a writer may have rewritten a shard meanwhile: again
                    records, superseded, good, bad = self._scan()
            except Exception as e:
                from engine.sources.remote import RemoteError
                if isinstance(e, RemoteError):
                    raise StoreError(f"{self.root}: cannot read the store: {e.reason}") from None
                raise
            self._records, self._commits, self.damaged, self.superseded = records, good, bad, superseded
            for batch, why in bad.items():
                if batch not in self._warned:
                    self._warned.add(batch)
                    self.warn(f"{self.root}: batch {batch} is damaged and left out ({why}); run `bike check "
                              f"--store {self.root}` and `bike repair --store {self.root}` (its videos are then "
                              f"tagged again by the next `bike tag`)")
        return self._commits

    def records(self) -> "list[dict]":
        """Every readable commit record, damaged and superseded (compacted-away) batches included (for
        check/repair/recover/compaction's clean-up)."""
        self.commits()
        return self._records

    def done_videos(self, model_id: str) -> "dict[str, str]":
        """video_id → status ('ok' | 'error') of every video committed for ``model_id``."""
        done: dict[str, str] = {}
        for c in self.commits():
            if c["model_id"] == model_id:
                done.update(c["videos"])
        return done

    def model_ids(self) -> "set[str]":
        return {c["model_id"] for c in self.commits()}

    # ---- reading -------------------------------------------------------------------------------------
    def _shard_keys(self, table: str) -> "list[str]":
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")
        return [self.shard_key(table, c) for c in self.commits() if c["tables"].get(table)]

    def _derived_keys(self, name: str) -> "list[str]":
        """The files of a derived table (``index.store.schema.DERIVED``: one Parquet file per model_id, written whole
        by the command that computes it), those that are regular files of a sane size."""
        folder = DERIVED[name][0]
        try:
            listed = self.fs.list(folder)
        except (FileNotFoundError, NotADirectoryError, OSError):
            return []
        keys = [f"{folder}/{k}" for k, size in sorted(listed.items())
                if k.endswith(".parquet") and "/" not in k and 0 < (size or 0) <= DERIVED_MAX_BYTES]
        if not self.remote:                 # a link planted in the store could point at any file
            keys = [k for k in keys if not os.path.islink(self.fs.path(k))]
        return keys

    def files(self, table: str) -> "list[Path]":
        """The committed shards of ``table`` (damaged batches left out): paths, or URLs on object storage."""
        return [self.fs.path(k) for k in self._shard_keys(table)]

    def _hidden_rows(self, table: str) -> "dict[str, tuple[str, list[str]]]":
        """Rows a replacement batch supersedes but whose removal has not run yet (a writer killed right after
        the replacing batch committed; ``recover`` finishes it): shard key → (model_id, video_ids) to hide."""
        if "video_id" not in TABLES[table].names:
            return {}
        out: dict = {}
        commits = self.commits()
        for r in commits:
            if r.get("cleaned", True):
                continue
            for c in commits:
                if c["batch"] >= r["batch"]:
                    break
                if c["model_id"] == r["model_id"] and c["tables"].get(table):
                    vids = sorted(set(c["videos"]) & (set(r["videos"]) | set(r.get("drop", ()))))
                    if vids:
                        key = self.shard_key(table, c)
                        model, old = out.get(key, (r["model_id"], []))
                        out[key] = (model, sorted(set(old) | set(vids)))
        return out

    def read(self, table: str, columns=None, model_id: "str | None" = None) -> pa.Table:
        """One table (committed rows only) as Arrow, optionally for one model_id. A shard that does not decode
        makes its batch damaged (:meth:`retry_without_damaged`): left out with a warning."""
        return self.retry_without_damaged(lambda: self._read(table, columns, model_id))

    def _read(self, table: str, columns=None, model_id: "str | None" = None) -> pa.Table:
        keys = self._shard_keys(table)
        if not keys:
            t = TABLES[table].empty_table()
            return t.select(columns) if columns else t
        hidden = self._hidden_rows(table)
        cols = None if columns is None else list(dict.fromkeys([*columns, "model_id"] + (
            ["video_id"] if hidden and "video_id" in TABLES[table].names else [])))
        parts = []
        fs = self.fs
        for k in keys:
            if cols is None:
                t = read_parquet(fs.arrow_path(k), filesystem=fs.arrow, schema=TABLES[table])
            else:
                t = read_parquet(fs.arrow_path(k), filesystem=fs.arrow, columns=cols)
            if k in hidden:
                m, vids = hidden[k]
                t = t.filter(pc.invert(pc.and_(pc.equal(t["model_id"], m),
                                               pc.is_in(t["video_id"], value_set=pa.array(vids)))))
            parts.append(t)
        t = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        if model_id is not None:
            t = t.filter(pc.equal(t["model_id"], model_id))
        return t.select(columns) if columns else t

    def connect(self, memory_limit: "int | None" = None, threads: "int | None" = None):
        """An in-memory DuckDB connection with one view per table over the committed shards, sandboxed
        (:func:`sandboxed_duckdb`: it reads these shards and nothing else, writes nothing; ``memory_limit``
        in bytes and ``threads`` are DuckDB's settings, locked with the rest). On object storage
        the connection may read no file at all: each table's committed shards are registered as a pyarrow
        dataset over the store's filesystem (index/store/storefs.py), and the views select from those; DuckDB keeps
        such registrations per connection, so other threads take their cursors with :func:`cursor`. A shard
        whose footer does not decode makes its batch damaged (:meth:`retry_without_damaged`); errors in later
        queries are the caller's to retry (``bike sql`` and search do)."""
        return self.retry_without_damaged(lambda: self._connect(memory_limit, threads))

    def _connect(self, memory_limit: "int | None", threads: "int | None"):
        keys = {table: self._shard_keys(table) for table in TABLES}
        derived = {name: self._derived_keys(name) for name in DERIVED}
        con = sandboxed_duckdb([] if self.remote else [self.fs.path(k) for group in (keys, derived)
                                                      for ks in group.values() for k in ks],
                               memory_limit=memory_limit, threads=threads)
        registered: dict = {}
        if self.remote:
            _REGISTERED[con] = registered
        try:
            self._views(con, keys, derived, registered)
        except BaseException:
            con.close()
            raise
        return con

    def _views(self, con, keys, derived, registered) -> None:

        def lit(p) -> str:
            return "'" + str(p).replace("'", "''") + "'"

        def source(table: str, ks: "list[str]", n: int) -> str:
            if not self.remote:
                return f"read_parquet([{', '.join(lit(self.fs.path(k)) for k in ks)}], union_by_name=true)"
            import pyarrow.dataset as ds
            name = f"_shards_{table}_{n}"
            schema = TABLES[table] if table in TABLES else DERIVED[table][1]
            dataset = ds.FileSystemDataset.from_paths(
                [self.fs.arrow_path(k) for k in ks], schema=_duck_schema(schema), format=ds.ParquetFileFormat(),
                filesystem=self.fs.arrow)
            con.register(name, dataset)
            registered[name] = dataset
            return name

        for table, schema in [*TABLES.items(), *((n, sch) for n, (_, sch) in DERIVED.items())]:
            # every view starts from the schema's typed, empty row set: a column the shards lack (shards
            # written before the column existed) is NULL, as pyarrow reads give it, not a missing name
            typed = ", ".join(f"CAST(NULL AS {_duck_type(f.type)}) AS {f.name}" for f in schema)
            parts = [f"SELECT {typed} WHERE false"]
            if table in derived:
                if derived[table]:
                    parts.append(f"SELECT * FROM {source(table, derived[table], 0)}")
            elif keys[table]:
                hidden = self._hidden_rows(table)
                plain = [k for k in keys[table] if k not in hidden]
                if plain:
                    parts.append(f"SELECT * FROM {source(table, plain, 0)}")
                for i, (k, (m, vids)) in enumerate(hidden.items(), 1):
                    parts.append(f"SELECT * FROM {source(table, [k], i)} WHERE NOT (model_id = {lit(m)} AND "
                                 f"video_id IN ({', '.join(map(lit, vids))}))")
            con.execute(f"CREATE VIEW {table} AS " + " UNION ALL BY NAME ".join(parts))

    # ---- writing -------------------------------------------------------------------------------------
    def lock(self):
        """The store's writer lock: one writing job at a time (``with store.lock(): ...``). Locally an OS file
        lock (``flock``), so a killed writer never leaves it held. On object storage the lease object
        ``_lock.json`` (index/store/lease.py), renewed while held; re-entrant for this Store object (``bike tag``'s
        index update runs under the tag job's lease). Raises :class:`StoreError` when another job holds it."""
        if not self.remote:
            return WriterLock(self.root / ".writer.lock")
        return self._leased()

    @contextmanager
    def _leased(self):
        if self._lease is not None:
            yield self._lease
            return
        from engine.sources.remote import RemoteError

        from .lease import Lease
        try:
            lease = Lease(self.fs, error=StoreError, warn=self.warn).acquire()
        except RemoteError as e:
            raise StoreError(f"{self.root}: cannot take the writer lease: {e.reason}") from None
        self._lease = lease
        try:
            yield lease
        finally:
            self._lease = None
            lease.release()

    def _check_lease(self, what: str = "what this job had not committed yet") -> None:
        """Object storage: only the holder of a live lease writes (raises otherwise; ``what``: the work in
        progress, which the message says was not committed)."""
        if not self.remote:
            return
        if self._lease is None:
            raise StoreError(f"{self.root}: writing to a store in object storage needs its writer lease "
                             "(`with store.lock(): ...`)")
        self._lease.check(what)

    def _write_shard(self, key: str, rows: pa.Table) -> dict:
        stats: dict = {}

        def write(tmp: str) -> None:
            pq.write_table(rows, tmp, compression="zstd")
            stats.update(file_stats(tmp))
        self.fs.write_file(key, write)
        return stats

    def _write_record(self, record: dict, new: bool = False) -> None:
        """Write a commit record. Object storage: a new one with a conditional create (``If-None-Match``), a
        rewrite (a replacement's clean-up) conditional on the record being unchanged since it was read."""
        key = f"{COMMITS}/{record['batch']}.json"
        data = json.dumps(record).encode()
        if not self.remote:
            self.fs.write(key, data)
            return
        self._check_lease(f"batch {record['batch']}" if new else "the batch being written")
        old = self._tags.get(record["batch"])
        tag = self.fs.create(key, data) if new or old is None else self.fs.replace(key, data, old)
        if tag is None:
            raise StoreError(f"{self.fs.path(key)}: the commit record was " + (
                "written by another job first" if new else "changed by another job since it was read") +
                "; nothing of this batch is visible (rerun the same command)")
        self._tags[record["batch"]] = tag

    def write_batch(self, tables: "dict[str, pa.Table]", model_id: str, videos: "dict[str, str]",
                    replace: bool = False, drop=()) -> str:
        """Atomically add one batch: ``tables`` (name → rows), for ``model_id``, finishing ``videos``
        (video_id → status). Returns the batch id. With ``replace``, older rows of these videos for this
        model_id are removed once the batch is committed; ``drop``: more video ids whose older rows go the
        same way (e.g. the "file not found" row of a path that now has content)."""
        try:
            return self._write_batch_or_say_why(tables, model_id, videos, replace, drop)
        except Exception:
            lost = self._lease_lost()
            if lost:                    # another job took the lease: whatever failed, that is the reason
                raise StoreError(lost) from None
            raise

    def _lease_lost(self) -> "str | None":
        """The one-line reason when this job's writer lease was taken over (object storage), else None."""
        lease = self._lease
        if lease is None:
            return None
        if not lease.lost:
            lease.renew()
        if not lease.lost:
            return None
        try:
            lease.check("the batch being written")
        except StoreError as e:
            return str(e)
        return None

    def _write_batch_or_say_why(self, tables, model_id, videos, replace, drop) -> str:
        from engine.sources.remote import RemoteError
        try:
            return self._write_batch(tables, model_id, videos, replace, drop)
        except FileExistsError as e:    # object storage: an immutable name taken (never overwritten)
            raise StoreError(f"{e}; nothing of this batch is visible (rerun the same command)") from None
        except OSError as e:            # disk full, read-only file system, quota: one line, nothing half-visible
            what = "disk full" if e.errno == errno.ENOSPC else "disk quota exceeded" if e.errno == errno.EDQUOT \
                else e.strerror or str(e)
            raise StoreError(f"{self.root}: cannot write a batch: {what}; the committed batches are intact and "
                             "the unfinished one is not visible (free space, then rerun the same command)") from None
        except RemoteError as e:
            raise StoreError(f"{self.root}: cannot write a batch: {e.reason}; the committed batches are intact "
                             "and the unfinished one is not visible (rerun the same command)") from None

    def _write_batch(self, tables, model_id, videos, replace, drop) -> str:
        self._check_lease("the batch being written")
        commits = self.commits()    # load the existing records first, or the new one would be read twice
        batch = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        counts, files = {}, {}
        for name, rows in tables.items():
            if name not in TABLES:
                raise StoreError(f"unknown table {name!r}")
            rows = rows.cast(TABLES[name]) if rows.schema != TABLES[name] else rows
            counts[name] = rows.num_rows
            if rows.num_rows:
                files[name] = self._write_shard(f"{name}/{batch}.parquet", rows)
        replace = bool(replace or drop)
        record = {"batch": batch, "model_id": model_id, "videos": videos, "tables": counts, "files": files,
                  "replace": replace, "cleaned": not replace, "created": time.time()}
        if drop:
            record["drop"] = sorted(set(drop) - set(videos))
        self._write_record(record, new=True)
        commits.append(record)
        self._records.append(record)
        if replace:
            self._supersede(record)
        return batch

    def _supersede(self, record: dict) -> None:
        """Remove rows of ``record``'s videos (same model_id) from every older batch's shards, and bring those
        batches' records (videos, row counts, checksums) up to date. Damaged older batches are left alone
        (``bike repair`` deals with them); rows they hold are not visible anyway. Locally a shard is rewritten
        in place (temp + rename); on object storage the filtered rows go to a new immutable name that the
        rewritten record points at (``shards``), and the old shard is deleted by the next :meth:`recover`."""
        gone = set(record["videos"]) | set(record.get("drop", ()))
        vids = pa.array(sorted(gone), pa.string())
        failed = False
        self.commits()
        # The batches a compaction hides are rewritten too (they sort before it): their rows must keep adding
        # up to no more than the compaction's (index/store/core.py trusted_compactions), or it would stop hiding them.
        older = sorted([c for c in self._records if c["batch"] not in self.damaged], key=lambda c: c["batch"])
        for c in older:
            if c["batch"] >= record["batch"]:
                break
            if c["model_id"] != record["model_id"] or not set(c["videos"]) & gone:
                continue
            hidden = c["batch"] in self.superseded
            files = c.setdefault("files", {})
            for table, n in c["tables"].items():
                if table not in TABLES:
                    continue
                key = self.shard_key(table, c)
                path = self.fs.path(key)
                if not n or "video_id" not in TABLES[table].names or self.fs.size(key) is None:
                    continue                        # `models` rows belong to the model, not to a video
                try:
                    t = read_parquet(self.fs.arrow_path(key), filesystem=self.fs.arrow, schema=TABLES[table])
                except Exception as e:  # noqa: BLE001 - a damaged shard must not stop every later writer
                    if hidden:                      # merged away: its rows are read from the compaction
                        c["tables"][table] = 0
                        files.pop(table, None)
                        continue
                    failed = True
                    self.warn(f"{path}: cannot rewrite this shard ({type(e).__name__}: {str(e)[:120]}); its "
                              f"replaced rows stay hidden; run `bike check --store {self.root}` and `bike repair`")
                    continue
                keep = t.filter(pc.invert(pc.is_in(t["video_id"], value_set=vids)))
                if keep.num_rows != t.num_rows:
                    if self.remote:
                        name = f"{c['batch']}.{uuid.uuid4().hex[:8]}.parquet"
                        files[table] = self._write_shard(f"{table}/{name}", keep)
                        c.setdefault("shards", {})[table] = name
                    else:
                        files[table] = self._write_shard(key, keep)
                elif not self.remote and (files.get(table) is None or files[table].get("bytes") != path.stat().st_size):
                    files[table] = file_stats(path)     # rewritten by an interrupted earlier pass
                c["tables"][table] = keep.num_rows
            c["videos"] = {v: s for v, s in c["videos"].items() if v not in gone}
            self._write_record(c)
        if not failed:                  # else: retried by the next recover(); readers hide the rows meanwhile
            record["cleaned"] = True
            self._write_record(record)

    def recover(self) -> "dict[str, int]":
        """Delete temporary files and uncommitted shards; finish pending replacements. Idempotent. Shards of
        a batch whose commit record exists but is damaged are kept (``bike repair`` quarantines them), and so
        are those of batches merged by a compaction (their grace period; compaction's clean-up deletes them).
        On object storage it runs only under the writer lease (it deletes every shard no record names: an
        unfinished batch's, and the old shards that replacements filtered into new names)."""
        self._check_lease()
        self.commits(refresh=True)
        keep_batches = set(self.damaged) | self.superseded
        if not self.remote:
            keep_batches |= {c["batch"] for c in self._records}
        named = {self.shard_key(t, c) for c in self._records for t in c["tables"]}
        removed = {"tmp": 0, "uncommitted": 0, "replacements": 0}
        for name in (*TABLES, COMMITS):
            for fname in self.fs.list(name):
                key = f"{name}/{fname}"
                if fname.endswith(".tmp"):
                    self.fs.delete(key)
                    removed["tmp"] += 1
                elif name != COMMITS and fname.endswith(".parquet") and key not in named \
                        and fname.split(".", 1)[0] not in keep_batches:
                    self.fs.delete(key)
                    removed["uncommitted"] += 1
        for c in list(self.commits()):
            if not c.get("cleaned", True):
                self._supersede(c)
                removed["replacements"] += 1
        return removed
