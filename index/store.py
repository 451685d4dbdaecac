"""The store: one directory of Parquet shards with all-or-nothing batches, readable by DuckDB.

Layout::

    STORE/<table>/<batch>.parquet     one shard per table per committed batch (tables: index/schema.py)
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
commit record is damaged the same way, and its shards are never deleted as "uncommitted" (only
``bike repair`` moves them, into ``STORE/_quarantine/``). ``bike check`` (index/check.py) verifies checksums
and row counts in full.

Compaction (index/compact.py, ``bike compact``) merges small batches into one batch per model behind ONE new
commit record that lists the merged batches under ``compacted`` (with ``files`` stats like any record). From its
commit on, :meth:`Store.commits` hides the merged batches (:attr:`Store.superseded`): every row is read once.
Their files stay a grace period for readers that listed them before, then compaction deletes them; meanwhile
they are neither damaged nor "files of no batch" for ``recover``, ``bike check`` and ``bike repair``.

Readers' DuckDB connections are sandboxed in DuckDB's own configuration (:func:`sandboxed_duckdb`): they may
read the store's committed shards and nothing else, never write a file, never install or load an extension,
and the settings are locked.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import TABLES

COMMITS = "_commits"
QUARANTINE = "_quarantine"


class StoreError(Exception):
    """A store directory that cannot be used; the message names it and says why."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: "str | os.PathLike", write) -> None:
    """Call ``write(tmp)`` with a temporary path (str) beside ``path``, fsync it, then rename it over ``path``:
    readers see the old file or the whole new one, never half a file. The temporary name ends in ``.tmp``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def file_stats(path: "str | os.PathLike") -> dict:
    """``{"bytes": size, "sha256": hex}`` of a file (what a commit record keeps per shard)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            n += len(block)
    return {"bytes": n, "sha256": h.hexdigest()}


def quick_shard_problem(path: Path, stats: "dict | None") -> "str | None":
    """Why the shard at ``path`` is unusable, from cheap facts only (exists, byte size against the commit
    record; for records without sizes, the Parquet magic and footer) → reason, or None when it looks whole. ``bike check`` does the full test."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "shard missing"
    except OSError as e:
        return f"shard unreadable: {e.strerror or e}"
    if stats and stats.get("bytes") is not None:
        if size != stats["bytes"]:
            return f"shard is {size} bytes, its commit record says {stats['bytes']} (truncated or overwritten)"
        return None                                   # same size as written: `bike check` compares checksums
    if size < 12:
        return f"shard is {size} bytes: not a Parquet file"
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


def sandboxed_duckdb(allowed_paths) -> "object":
    """An in-memory DuckDB connection locked down in DuckDB's own configuration: it can read exactly the
    files in ``allowed_paths`` and nothing else (``enable_external_access = false`` + ``allowed_paths``),
    write no file (COPY, EXPORT, ATTACH, spilling: ``temp_directory = ''``), neither install nor load
    extensions (autoinstall/autoload off), and no statement can change these settings
    (``lock_configuration``). The statement-type check of ``index.sql`` is a second layer on top."""
    import duckdb
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    try:
        con.execute("SET temp_directory = ''")
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
    """A store directory. ``Store(path, create=True)`` makes it when missing. ``warn`` receives the one-line
    warnings about damaged batches (default: printed to stderr as ``bike: warning: ...``)."""

    def __init__(self, root: "str | os.PathLike", create: bool = False, warn=None):
        self.root = Path(root).expanduser().resolve()
        self._commits: "list[dict] | None" = None
        self._records: "list[dict]" = []
        self.damaged: "dict[str, str]" = {}          # batch → why it is left out of reads
        self.superseded: "set[str]" = set()          # batches merged by a compaction (index/compact.py): hidden
        self._warned: set = set()
        self.warn = warn or (lambda msg: print(f"bike: warning: {msg}", file=sys.stderr, flush=True))
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

    # ---- commit records ------------------------------------------------------------------------------
    def shard(self, table: str, batch: str) -> Path:
        return self.root / table / f"{batch}.parquet"

    def _read_records(self) -> "tuple[list[dict], dict[str, str]]":
        """Every commit record (oldest first) and {batch: reason} of records that cannot be read. A record that
        vanishes between listing and reading (compaction's clean-up, index/compact.py, or ``bike repair``)
        makes the folder be listed again, so the records returned are one consistent view."""
        d = self.root / COMMITS
        for attempt in range(5):
            out, bad, vanished = [], {}, False
            for p in sorted(d.glob("*.json")) if d.is_dir() else []:
                try:
                    with open(p) as f:
                        rec = json.load(f)
                    if not isinstance(rec, dict) or not {"batch", "model_id", "videos", "tables"} <= set(rec):
                        raise ValueError("not a commit record")
                    if not isinstance(rec.get("compacted", []), list) or not isinstance(rec.get("covers", []), list):
                        raise ValueError("'compacted' / 'covers' are not lists of batches")
                    out.append(rec)
                except FileNotFoundError:
                    vanished = True                       # removed after we listed it: list again
                except (OSError, ValueError) as e:        # JSONDecodeError is a ValueError
                    bad[p.stem] = f"commit record {p} unreadable ({type(e).__name__}: {e})"
            if not vanished:
                break
        return out, bad

    def _problem(self, rec: dict) -> "str | None":
        """Why a committed batch cannot be read (cheap checks, :func:`quick_shard_problem`), or None."""
        for table, n in rec["tables"].items():
            if not n or table not in TABLES:
                continue
            why = quick_shard_problem(self.shard(table, rec["batch"]), (rec.get("files") or {}).get(table))
            if why:
                return f"{table}: {why}"
        return None

    def _scan(self) -> "tuple[list[dict], set[str], list[dict], dict[str, str]]":
        """(every readable record, superseded batches, visible undamaged records, {damaged batch: why})."""
        records, bad = self._read_records()
        # A compacted batch (index/compact.py) names the batches it merged under ``compacted``: they are
        # superseded. Their files stay a grace period for readers that listed them a moment ago, and are then
        # deleted (shards before record), so they are neither read nor checked here, and never "damaged".
        superseded = {b for r in records for b in r.get("compacted", ()) if isinstance(b, str)}
        good = []
        for rec in records:
            if rec["batch"] in superseded:
                continue
            why = self._problem(rec)
            if why:
                bad[rec["batch"]] = why
            else:
                good.append(rec)
        bad = {b: why for b, why in bad.items() if b not in superseded}
        return records, superseded, good, bad

    def commits(self, refresh: bool = False) -> "list[dict]":
        """Commit records of the committed, visible, undamaged batches, oldest first (read once, then kept up to
        date by this object's own writes; ``refresh=True`` re-reads the directory). Batches merged by a
        compaction are hidden (listed in :attr:`superseded`): each row is read once, from the compacted batch.
        A damaged batch (a shard missing, truncated or not Parquet; an unreadable record) is left out, listed
        in :attr:`damaged` and warned about once."""
        if self._commits is None or refresh:
            records, superseded, good, bad = self._scan()
            if set(bad) & {r["batch"] for r in records}:   # a writer may have rewritten a shard meanwhile: again
                records, superseded, good, bad = self._scan()
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
    def files(self, table: str) -> "list[Path]":
        """The committed shards of ``table`` (damaged batches left out)."""
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")
        return [self.shard(table, c["batch"]) for c in self.commits() if c["tables"].get(table)]

    def _hidden_rows(self, table: str) -> "dict[Path, tuple[str, list[str]]]":
        """Rows a replacement batch supersedes but whose removal has not run yet (a writer killed right after
        the replacing batch committed; ``recover`` finishes it): shard → (model_id, video_ids) to hide."""
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
                        path = self.shard(table, c["batch"])
                        model, old = out.get(path, (r["model_id"], []))
                        out[path] = (model, sorted(set(old) | set(vids)))
        return out

    def read(self, table: str, columns=None, model_id: "str | None" = None) -> pa.Table:
        """One table (committed rows only) as Arrow, optionally for one model_id."""
        files = self.files(table)
        if not files:
            t = TABLES[table].empty_table()
            return t.select(columns) if columns else t
        hidden = self._hidden_rows(table)
        cols = None if columns is None else list(dict.fromkeys([*columns, "model_id"] + (
            ["video_id"] if hidden and "video_id" in TABLES[table].names else [])))
        parts = []
        for p in files:
            t = pq.read_table(p, schema=TABLES[table]) if cols is None else pq.read_table(p, columns=cols)
            if p in hidden:
                m, vids = hidden[p]
                t = t.filter(pc.invert(pc.and_(pc.equal(t["model_id"], m),
                                               pc.is_in(t["video_id"], value_set=pa.array(vids)))))
            parts.append(t)
        t = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        if model_id is not None:
            t = t.filter(pc.equal(t["model_id"], model_id))
        return t.select(columns) if columns else t

    def connect(self):
        """An in-memory DuckDB connection with one view per table over the committed shards, sandboxed
        (:func:`sandboxed_duckdb`: it reads these shards and nothing else, writes nothing)."""
        files = {table: self.files(table) for table in TABLES}
        con = sandboxed_duckdb([p for ps in files.values() for p in ps])

        def lit(p) -> str:
            return "'" + str(p).replace("'", "''") + "'"

        for table, schema in TABLES.items():
            if files[table]:
                hidden = self._hidden_rows(table)
                plain = [p for p in files[table] if p not in hidden]
                parts = [f"SELECT * FROM read_parquet([{', '.join(map(lit, plain))}], union_by_name=true)"] \
                    if plain else []
                for p, (m, vids) in hidden.items():
                    parts.append(f"SELECT * FROM read_parquet([{lit(p)}]) WHERE NOT (model_id = {lit(m)} AND "
                                 f"video_id IN ({', '.join(map(lit, vids))}))")
                con.execute(f"CREATE VIEW {table} AS " + " UNION ALL BY NAME ".join(parts))
            else:
                cols = ", ".join(f"CAST(NULL AS {_duck_type(f.type)}) AS {f.name}" for f in schema)
                con.execute(f"CREATE VIEW {table} AS SELECT {cols} WHERE false")
        return con

    # ---- writing -------------------------------------------------------------------------------------
    def lock(self) -> "WriterLock":
        """The store's writer lock: one writing job at a time (``with store.lock(): ...``). An OS file lock
        (``flock``), so a killed writer never leaves it held. Raises :class:`StoreError` when another
        process holds it."""
        return WriterLock(self.root / ".writer.lock")

    def _write_shard(self, path: Path, rows: pa.Table) -> dict:
        stats: dict = {}

        def write(tmp: str) -> None:
            pq.write_table(rows, tmp, compression="zstd")
            stats.update(file_stats(tmp))
        atomic_write(path, write)
        return stats

    def _write_record(self, record: dict) -> None:
        atomic_write(self.root / COMMITS / f"{record['batch']}.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(record)))

    def write_batch(self, tables: "dict[str, pa.Table]", model_id: str, videos: "dict[str, str]",
                    replace: bool = False, drop=()) -> str:
        """Atomically add one batch: ``tables`` (name → rows), for ``model_id``, finishing ``videos``
        (video_id → status). Returns the batch id. With ``replace``, older rows of these videos for this
        model_id are removed once the batch is committed; ``drop``: more video ids whose older rows go the
        same way (e.g. the "file not found" row of a path that now has content)."""
        try:
            return self._write_batch(tables, model_id, videos, replace, drop)
        except OSError as e:            # disk full, read-only file system, quota: one line, nothing half-visible
            what = "disk full" if e.errno == errno.ENOSPC else "disk quota exceeded" if e.errno == errno.EDQUOT \
                else e.strerror or str(e)
            raise StoreError(f"{self.root}: cannot write a batch: {what}; the committed batches are intact and "
                             "the unfinished one is not visible (free space, then rerun the same command)") from None

    def _write_batch(self, tables, model_id, videos, replace, drop) -> str:
        commits = self.commits()    # load the existing records first, or the new one would be read twice
        batch = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        counts, files = {}, {}
        for name, rows in tables.items():
            if name not in TABLES:
                raise StoreError(f"unknown table {name!r}")
            rows = rows.cast(TABLES[name]) if rows.schema != TABLES[name] else rows
            counts[name] = rows.num_rows
            if rows.num_rows:
                files[name] = self._write_shard(self.shard(name, batch), rows)
        replace = bool(replace or drop)
        record = {"batch": batch, "model_id": model_id, "videos": videos, "tables": counts, "files": files,
                  "replace": replace, "cleaned": not replace, "created": time.time()}
        if drop:
            record["drop"] = sorted(set(drop) - set(videos))
        self._write_record(record)
        commits.append(record)
        self._records.append(record)
        if replace:
            self._supersede(record)
        return batch

    def _supersede(self, record: dict) -> None:
        """Remove rows of ``record``'s videos (same model_id) from every older batch's shards, and bring those
        batches' records (videos, row counts, checksums) up to date. Damaged older batches are left alone
        (``bike repair`` deals with them); rows they hold are not visible anyway."""
        gone = set(record["videos"]) | set(record.get("drop", ()))
        vids = pa.array(sorted(gone), pa.string())
        failed = False
        for c in self.commits():
            if c["batch"] >= record["batch"]:
                break
            if c["model_id"] != record["model_id"] or not set(c["videos"]) & gone:
                continue
            files = c.setdefault("files", {})
            for table, n in c["tables"].items():
                path = self.shard(table, c["batch"])
                if not n or not path.exists() or "video_id" not in TABLES[table].names:
                    continue                        # `models` rows belong to the model, not to a video
                try:
                    t = pq.read_table(path, schema=TABLES[table])
                except Exception as e:  # noqa: BLE001 - a damaged shard must not stop every later writer
                    failed = True
                    self.warn(f"{path}: cannot rewrite this shard ({type(e).__name__}: {str(e)[:120]}); its "
                              f"replaced rows stay hidden; run `bike check --store {self.root}` and `bike repair`")
                    continue
                keep = t.filter(pc.invert(pc.is_in(t["video_id"], value_set=vids)))
                if keep.num_rows != t.num_rows:
                    files[table] = self._write_shard(path, keep)
                elif files.get(table) is None or files[table].get("bytes") != path.stat().st_size:
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
        are those of batches merged by a compaction (their grace period; compaction's clean-up deletes them)."""
        self.commits(refresh=True)
        known = {c["batch"] for c in self._records} | set(self.damaged) | self.superseded
        removed = {"tmp": 0, "uncommitted": 0, "replacements": 0}
        for name in (*TABLES, COMMITS):
            d = self.root / name
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)
                    removed["tmp"] += 1
                elif name != COMMITS and p.suffix == ".parquet" and p.stem not in known:
                    p.unlink(missing_ok=True)
                    removed["uncommitted"] += 1
        for c in list(self.commits()):
            if not c.get("cleaned", True):
                self._supersede(c)
                removed["replacements"] += 1
        return removed
