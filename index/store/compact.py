"""Compaction: merge a store's many small shards into few large ones, atomically, while readers run.

Every committed batch of ``bike tag`` adds one small Parquet shard per table (index/store/core.py), so a store
tagged in 2,000 batches makes DuckDB and search open 2,000 files per table. :func:`compact` merges runs of
consecutive small batches of one model into one batch with large row groups, per table.

The protocol reuses the store's commit records (read index/store/core.py first):

1. Under the store's writer lock (a tagging job and a compaction never overlap), ``Store.recover()``
   first, so no replacement (``--force``) is half done.
2. For each group of batches: every table's shards are streamed into ``<table>/<new>.parquet`` (temporary
   name + fsync + rename; memory bounded by one row group). The new batch id is the group's last batch id
   plus ``-c<random>``, so it sorts right after the batches it replaces and before any later batch.
3. The commit point: the record ``_commits/<new>.json`` (temporary name + rename), listing the merged
   batches under ``compacted`` (and under ``covers`` every original batch with clip embeddings in it: the
   FAISS index covers the new batch when it covered those). From then on
   ``Store.commits()`` hides the merged batches: every reader sees each row once, from the old shards (it
   listed the records before the commit point) or from the new one (after it), never both, never neither.
4. Clean-up: the merged batches' shards and records are deleted only ``grace_s`` seconds after the commit
   point (default 10 minutes), by this or a later compaction: a reader that listed the old records a moment
   ago still finds their files. Shards go first, records last; a reader that finds a record gone lists again.

Integrity (index/store/check.py). A compacted record carries ``files`` (byte size + SHA-256 per shard) like any
commit record, so readers' cheap checks, ``bike check`` and ``bike repair`` treat it as any batch. Damaged
batches are never merged: readers already leave them out, and every shard of a group is verified in full
(SHA-256, row count) before it is merged; a batch that fails is left alone (``bike repair`` sets it aside) and
the runs around it are merged without it. Readers trust a compacted record to hide the batches it names only
when it holds their rows (``index.store.core.trusted_compactions``), and the clean-up deletes them only behind a
compacted batch verified in full: a forged or damaged record hides nothing and deletes nothing.

Killed at any moment (SIGKILL included): before the commit point the new shards are uncommitted and the
next ``Store.recover()`` deletes them; after it the old files are merely garbage awaiting clean-up. Rows are
never lost or doubled. The FAISS index (index/search/vectors.py) knows that a compacted batch holds exactly the
clips of the batches it covers, so compaction does not make the index stale.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import TABLES
from .core import COMMITS, Store, StoreError, file_stats

#: ``bike tag`` compacts at the end of a run once the store holds more than this many committed batches.
AUTO_THRESHOLD = 256
#: A batch whose shards together exceed this many bytes is left as it is; groups are closed at this size.
TARGET_BYTES = 256 * 2**20
#: Rows per Parquet row group in compacted shards (also bounds the rows held in memory while merging).
ROW_GROUP_ROWS = 65_536
#: Seconds the files of merged batches are kept for readers that listed them before the commit point.
GRACE_S = 600.0


@dataclass
class CompactReport:
    """What :func:`compact` did."""
    batches_before: int = 0
    batches_after: int = 0
    groups: int = 0                      # new (compacted) batches written
    merged: int = 0                      # batches merged into them
    rows: "dict[str, int]" = field(default_factory=dict)     # rows rewritten per table
    bytes_written: int = 0
    deleted_batches: int = 0             # superseded batches whose files were removed (past the grace period)
    damaged: "list[str]" = field(default_factory=list)       # damaged batches left alone (not merged)
    seconds: float = 0.0

    def line(self) -> str:
        if not self.groups:
            what = f"nothing to merge ({self.batches_before} batches)"
        else:
            what = (f"merged {self.merged} batches into {self.groups} ({self.batches_before} → "
                    f"{self.batches_after} batches; {sum(self.rows.values())} rows, "
                    f"{self.bytes_written / 2**20:.1f} MiB written)")
        line = f"compact: {what}; removed the files of {self.deleted_batches} superseded batches in {self.seconds:.1f}s"
        if self.damaged:
            line += (f"; left {len(self.damaged)} damaged batch(es) alone, e.g. {self.damaged[0]} (bike check, "
                     "bike repair)")
        return line


def batch_bytes(store: Store, record: dict, listed: "dict | None" = None) -> int:
    """Stored size of one committed batch's shards (on object storage from ``listed``, {table: {name: size}}
    of one listing per table folder, filled on first use)."""
    return sum(size or 0 for _, _, size in store.shard_sizes(record, listed))


def plan(store: Store, target_bytes: int = TARGET_BYTES, skip=()) -> "list[list[dict]]":
    """Groups (≥ 2 batches each) to merge: per model, runs of consecutive batches each smaller than
    ``target_bytes``, closed when their total reaches it. A batch with a replacement still pending is never
    merged (``Store.recover`` finishes those first), nor a damaged one (``Store.damaged``; ``skip``: more
    batches to leave alone, e.g. those that failed :func:`verify`); either ends a run, so a merged batch only
    ever replaces batches that were consecutive."""
    skip = set(skip)
    visible = {c["batch"] for c in store.commits()}
    damaged = set(store.damaged)
    unreadable = damaged - {r["batch"] for r in store.records()}     # model unknown: ends every model's run
    by_model: dict[str, list[dict]] = {}
    for c in store.records():                    # damaged batches too (in order), so that they end runs
        if c["batch"] in visible or c["batch"] in damaged:
            by_model.setdefault(c["model_id"], []).append(c)
    for bad in sorted(unreadable):
        for records in by_model.values():
            records.append({"batch": bad, "tables": {}, "videos": {}})
    for records in by_model.values():
        records.sort(key=lambda c: c["batch"])
    skip |= damaged
    listed = {} if store.remote else None
    groups: list[list[dict]] = []
    for records in by_model.values():
        run: list[dict] = []
        size = 0
        for c in records:
            b = 0 if c["batch"] in skip else batch_bytes(store, c, listed)
            if not c.get("cleaned", True) or b >= target_bytes or c["batch"] in skip:
                if len(run) > 1:
                    groups.append(run)
                run, size = [], 0
                continue
            run.append(c)
            size += b
            if size >= target_bytes:
                if len(run) > 1:
                    groups.append(run)
                run, size = [], 0
        if len(run) > 1:
            groups.append(run)
    return groups


def verify(store: Store, members: "list[dict]") -> "dict[str, str]":
    """Check every shard of ``members`` in full (``bike check``'s test: SHA-256 against the record, or a full
    decode for records without checksums, and the row count) → {batch: why} of those that fail."""
    from .check import _shard_problem
    bad: dict[str, str] = {}
    listed: dict = {}
    for c in members:
        for table, n in sorted(c["tables"].items()):
            if not n or table not in TABLES:
                continue
            if store.remote and table not in listed:
                listed[table] = store.fs.list(table)
            why = _shard_problem(store, store.shard_key(table, c), int(n), (c.get("files") or {}).get(table),
                                 listed.get(table) if store.remote else None)
            if why:
                bad[c["batch"]] = f"{table} shard: {why}"
                break
    return bad


def _merge_table(store: Store, table: str, members: "list[dict]", dest: str, row_group_rows: int,
                 stats: "dict | None" = None) -> int:
    """Stream the members' shards of ``table`` into one Parquet file, key ``dest`` in the store (written whole:
    index/store/storefs.py) → rows written. ``stats``
    receives the new file's byte size and SHA-256 (:func:`index.store.core.file_stats`). A member shard that is
    missing or holds another row count than its record says raises :class:`StoreError` (nothing committed)."""
    schema = TABLES[table]
    rows = 0

    def write(tmp: str) -> None:
        nonlocal rows
        buffered: list[pa.Table] = []
        n = 0
        with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
            for c in members:
                p = store.shard_path(table, c)
                if not c["tables"].get(table):
                    continue
                t = store.read_shard(table, c, schema=schema)     # missing (newer) columns read as NULL
                if t is None:
                    raise StoreError(f"{p}: shard of batch {c['batch']} missing; not merged (bike check)")
                if t.num_rows != c["tables"][table]:
                    raise StoreError(f"{p}: {t.num_rows} rows, its commit record says {c['tables'][table]}; "
                                     "not merged (bike check)")
                buffered.append(t)
                n += t.num_rows
                if n >= row_group_rows:
                    w.write_table(pa.concat_tables(buffered), row_group_size=row_group_rows)
                    rows, buffered, n = rows + n, [], 0
            if buffered:
                w.write_table(pa.concat_tables(buffered), row_group_size=row_group_rows)
                rows += n
        if stats is not None:
            stats.update(file_stats(tmp))

    store.fs.write_file(dest, write)
    if not rows:
        store.fs.delete(dest)
        if stats is not None:
            stats.clear()
    return rows


def merge_group(store: Store, members: "list[dict]", row_group_rows: int = ROW_GROUP_ROWS) -> dict:
    """Write the merged shards of ``members`` (one model's consecutive batches) and commit them as one batch;
    returns the new commit record. The caller holds the writer lock."""
    model_id = members[0]["model_id"]
    assert all(c["model_id"] == model_id for c in members)
    batch = f"{members[-1]['batch']}-c{uuid.uuid4().hex[:6]}"
    counts: dict[str, int] = {}
    files: dict[str, dict] = {}
    for table in TABLES:
        if any(c["tables"].get(table) for c in members):
            stats: dict = {}
            counts[table] = _merge_table(store, table, members, f"{table}/{batch}.parquet", row_group_rows, stats)
            if counts[table]:
                files[table] = stats
    videos: dict[str, str] = {}
    covers: list[str] = []
    for c in members:
        videos.update(c["videos"])
        covers.extend(c["covers"] if "covers" in c else [c["batch"]] if c["tables"].get("embeddings") else [])
    record = {"batch": batch, "model_id": model_id, "videos": videos, "tables": counts, "files": files,
              "replace": False,
              "cleaned": True, "created": time.time(), "compacted": [c["batch"] for c in members],
              "covers": covers}
    store._write_record(record, new=True)           # object storage: a conditional create, under the lease
    return record


def collect_garbage(store: Store, grace_s: float = GRACE_S, now: "float | None" = None) -> int:
    """Delete the files of batches merged by a compaction committed more than ``grace_s`` seconds ago →
    how many batches were removed. The caller holds the writer lock.

    Never on an unverified record: only the batches hidden by a *visible* compaction are deleted, which
    readers trust (``index.store.core.trusted_compactions``: same model, rows adding up, its shards present with
    their recorded sizes), and only after that compaction passed :func:`verify` in full (SHA-256 and row count
    of every shard: it really holds the rows). A forged or damaged compaction record therefore deletes
    nothing; the batches it names stay visible, and ``bike check`` reports it.

    Order matters for kill-safety: a batch's shards go before its record, and a merged batch that is itself a
    compaction loses its own merged batches first (were its record deleted first, the batches it hides would
    count again). Unreadable records are left to ``bike repair``."""
    now = time.time() if now is None else now
    store.commits(refresh=True)
    records = {c["batch"]: c for c in store.records()}
    removed = 0

    def tree(batch: str) -> "list[str]":
        out: list[str] = []
        for inner in (records.get(batch) or {}).get("compacted", ()):
            if inner in records and inner not in out:
                out += [b for b in tree(inner) if b not in out] + [inner]
        return out

    def delete(batch: str) -> None:
        nonlocal removed
        rec = records.pop(batch, None)
        if rec is None:
            return
        for inner in rec.get("compacted", ()):
            delete(inner)
        for table in TABLES:
            store.fs.delete(store.shard_key(table, rec))
            if rec.get("shards", {}).get(table):      # object storage: the original name, if still there
                store.fs.delete(f"{table}/{batch}.parquet")
        store.fs.delete(f"{COMMITS}/{batch}.json")
        removed += 1

    for c in list(store.commits()):
        if not c.get("compacted") or now - float(c.get("created", now)) < grace_s or not tree(c["batch"]):
            continue
        bad = verify(store, [c])
        if bad:
            store.warn(f"{store.root}: batch {c['batch']} does not hold what its record says ({bad[c['batch']]}); "
                       "the batches it merged are kept: run `bike check --store "
                       f"{store.root}` and `bike repair --store {store.root}`")
            continue
        for old in c["compacted"]:
            delete(old)
    return removed


def compact(store: "Store | str", target_bytes: int = TARGET_BYTES, grace_s: float = GRACE_S,
            row_group_rows: int = ROW_GROUP_ROWS, locked: bool = False, log=None) -> CompactReport:
    """Merge the store's small batches (see the module docstring). ``locked``: the caller already holds
    the store's writer lock (``bike tag``); otherwise it is taken here, and a running writer makes this
    raise ``StoreError`` with the holder's pid."""
    store = store if isinstance(store, Store) else Store(store)
    if not locked:
        with store.lock():
            return compact(store, target_bytes, grace_s, row_group_rows, locked=True, log=log)
    t0 = time.perf_counter()
    say = log or (lambda msg: None)
    store.recover()
    report = CompactReport(batches_before=len(store.commits()))
    report.damaged = sorted(store.damaged)               # left out by commits(): never merged
    skip: dict[str, str] = {}
    while True:                                          # verify every member in full; re-plan without failures
        groups = plan(store, target_bytes, skip)
        bad = {b: why for members in groups for b, why in verify(store, members).items()}
        if not bad:
            break
        for b, why in bad.items():
            store.warn(f"{store.root}: batch {b} is damaged ({why}); not merged: run `bike check --store "
                       f"{store.root}` and `bike repair --store {store.root}`")
        skip.update(bad)
    report.damaged = sorted(set(report.damaged) | set(skip))
    for members in groups:
        record = merge_group(store, members, row_group_rows)
        report.groups += 1
        report.merged += len(members)
        for table, n in record["tables"].items():
            report.rows[table] = report.rows.get(table, 0) + n
        report.bytes_written += sum(f.get("bytes", 0) for f in record["files"].values())
        say(f"merged {len(members)} batches of model {record['model_id']} into {record['batch']}")
    report.deleted_batches = collect_garbage(store, grace_s)
    report.batches_after = len(store.commits(refresh=True))
    report.seconds = time.perf_counter() - t0
    return report


def needs_compaction(store: Store, threshold: int = AUTO_THRESHOLD) -> bool:
    """Whether ``bike tag`` should compact: more than ``threshold`` committed batches."""
    return threshold > 0 and len(store.commits()) > threshold
