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
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import TABLES

COMMITS = "_commits"


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
    """A store directory. ``Store(path, create=True)`` makes it when missing."""

    def __init__(self, root: "str | os.PathLike", create: bool = False):
        self.root = Path(root).expanduser().resolve()
        self._commits: "list[dict] | None" = None
        self.superseded: "set[str]" = set()
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
            for name in (*TABLES, COMMITS):
                (self.root / name).mkdir(exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StoreError(f"{self.root}: store directory is not writable")

    # ---- commit records ------------------------------------------------------------------------------
    def commits(self, refresh: bool = False) -> "list[dict]":
        """Commit records of all committed batches, oldest first (read once, then kept up to date by this
        object's own writes; ``refresh=True`` re-reads the directory)."""
        if self._commits is None or refresh:
            d = self.root / COMMITS
            for _attempt in range(5):
                out = []
                try:
                    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
                        with open(p) as f:
                            out.append(json.load(f))
                    break
                except FileNotFoundError:   # removed by compaction's clean-up after we listed: list again
                    continue
            else:
                raise StoreError(f"{d}: commit records keep vanishing while being read; try again")
            # A compacted batch (index/compact.py) names the batches it merged; they are superseded: their
            # files stay a grace period for readers that listed them a moment ago, but are no longer read.
            self.superseded = {b for c in out for b in c.get("compacted", ())}
            self._commits = [c for c in out if c["batch"] not in self.superseded]
        return self._commits

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
        """The committed shards of ``table``."""
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")
        out = []
        for c in self.commits():
            if c["tables"].get(table):
                p = self.root / table / f"{c['batch']}.parquet"
                if p.exists():
                    out.append(p)
        return out

    def read(self, table: str, columns=None, model_id: "str | None" = None) -> pa.Table:
        """One table (committed rows only) as Arrow, optionally for one model_id."""
        files = self.files(table)
        if not files:
            t = TABLES[table].empty_table()
            return t.select(columns) if columns else t
        t = pa.concat_tables([pq.read_table(p, columns=columns, schema=TABLES[table]) if columns is None
                              else pq.read_table(p, columns=list(dict.fromkeys([*columns, "model_id"])))
                              for p in files])
        if model_id is not None:
            t = t.filter(pc.equal(t["model_id"], model_id))
        return t.select(columns) if columns else t

    def connect(self):
        """An in-memory DuckDB connection with one view per table over the committed shards."""
        import duckdb
        con = duckdb.connect(":memory:")
        for table, schema in TABLES.items():
            files = self.files(table)
            if files:
                paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{paths}], union_by_name=true)")
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

    def write_batch(self, tables: "dict[str, pa.Table]", model_id: str, videos: "dict[str, str]",
                    replace: bool = False) -> str:
        """Atomically add one batch: ``tables`` (name → rows), for ``model_id``, finishing ``videos``
        (video_id → status). Returns the batch id. With ``replace``, older rows of these videos for this
        model_id are removed once the batch is committed."""
        commits = self.commits()    # load the existing records first, or the new one would be read twice
        batch = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        counts = {}
        for name, rows in tables.items():
            if name not in TABLES:
                raise StoreError(f"unknown table {name!r}")
            rows = rows.cast(TABLES[name]) if rows.schema != TABLES[name] else rows
            counts[name] = rows.num_rows
            if rows.num_rows:
                atomic_write(self.root / name / f"{batch}.parquet",
                              lambda tmp, rows=rows: pq.write_table(rows, tmp, compression="zstd"))
        record = {"batch": batch, "model_id": model_id, "videos": videos, "tables": counts,
                  "replace": bool(replace), "cleaned": not replace, "created": time.time()}
        atomic_write(self.root / COMMITS / f"{batch}.json",
                      lambda tmp: Path(tmp).write_text(json.dumps(record)))
        commits.append(record)
        if replace:
            self._supersede(record)
        return batch

    def _supersede(self, record: dict) -> None:
        """Remove rows of ``record``'s videos (same model_id) from every older batch's shards."""
        vids = pa.array(list(record["videos"]))
        for c in self.commits():
            if c["batch"] >= record["batch"]:
                break
            if c["model_id"] != record["model_id"] or not set(c["videos"]) & set(record["videos"]):
                continue
            for table, n in c["tables"].items():
                path = self.root / table / f"{c['batch']}.parquet"
                if not n or not path.exists() or "video_id" not in TABLES[table].names:
                    continue                        # `models` rows belong to the model, not to a video
                t = pq.read_table(path, schema=TABLES[table])
                keep = t.filter(pc.invert(pc.is_in(t["video_id"], value_set=vids)))
                if keep.num_rows != t.num_rows:
                    atomic_write(path, lambda tmp, keep=keep: pq.write_table(keep, tmp, compression="zstd"))
            c["videos"] = {v: s for v, s in c["videos"].items() if v not in record["videos"]}
            atomic_write(self.root / COMMITS / f"{c['batch']}.json", lambda tmp, c=c: Path(tmp).write_text(json.dumps(c)))
        record["cleaned"] = True
        atomic_write(self.root / COMMITS / f"{record['batch']}.json",
                      lambda tmp: Path(tmp).write_text(json.dumps(record)))

    def recover(self) -> "dict[str, int]":
        """Delete temporary files and uncommitted shards; finish pending replacements. Idempotent."""
        committed = {c["batch"] for c in self.commits(refresh=True)} | self.superseded   # (see commits())
        removed = {"tmp": 0, "uncommitted": 0, "replacements": 0}
        for name in (*TABLES, COMMITS):
            d = self.root / name
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)
                    removed["tmp"] += 1
                elif name != COMMITS and p.suffix == ".parquet" and p.stem not in committed:
                    p.unlink(missing_ok=True)
                    removed["uncommitted"] += 1
        for c in self.commits():
            if not c.get("cleaned", True):
                self._supersede(c)
                removed["replacements"] += 1
        return removed
