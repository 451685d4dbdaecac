"""Verify a store against its commit records (``bike check``) and set damaged batches aside (``bike repair``).

What is checked, per committed batch (``STORE/_commits/<batch>.json``):

* the commit record itself can be read;
* every shard it names exists, has the byte size and SHA-256 the record holds (records written before
  checksums existed: the shard is read in full instead), is a Parquet file, and holds the row count the
  record says.

Compaction (index/store/compact.py). A compacted batch (its name ends in ``-c<random>``) is checked like any batch:
its record carries ``files`` too, and names under ``compacted`` the batches it merged (``covers``: the original
batches whose clips it holds, for the FAISS index); both must be lists of batch names (index/store/validate.py checks
every record's shape). The merged batches are
superseded: readers no longer read them and their files await compaction's clean-up (a grace period), so they
are counted apart, never reported as damaged nor as files of no batch.

On object storage (docs/storage.md) each shard is streamed once through SHA-256; leftovers are the shards no
commit record names. Repair there copies instead of moving (:func:`_repair_objects`).

Anything else in the table folders is reported too: shards of no batch (a writer killed before its commit
record; the next writer's ``Store.recover`` deletes them) and replacements a killed ``--force`` run left
unfinished (``recover`` finishes them).

Repair. A damaged batch cannot be trusted in part (a batch is all-or-nothing), so :func:`repair_store` moves
ALL of its shards, then its commit record, into ``STORE/_quarantine/<batch>/`` — nothing is deleted — and
writes there ``retag.txt``, the paths of its videos when its ``videos`` shard is still readable. Without a
commit record its videos are no longer "done": the next ``bike tag`` over the same sources tags them again.
Shards move first and the record last, so a crash in the middle leaves a batch that readers already skip as
damaged, and a second ``bike repair`` finishes the move. A damaged compacted batch goes alone: a compaction
hides the batches it merged only while it is whole and holds their rows (``index.store.core.trusted_compactions``),
so the merged batches still on disk are already visible again, and stay.

Forged records. A well-formed compacted record that names real batches under ``compacted`` without holding
their rows (say ``"tables": {}``) would hide them from every reader and let the clean-up delete them. Readers
ignore such a record (its batches stay visible), and ``bike check`` reports it as a damaged batch ("forged or
damaged compaction record"); ``bike repair`` sets the record aside.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from .parquetio import read_parquet
from .schema import TABLES
from .core import COMMITS, QUARANTINE, Store, StoreError, file_stats, stream_stats


@dataclass
class Problem:
    batch: str
    table: "str | None"          # None: the commit record itself
    reason: str

    def line(self) -> str:
        where = f"{self.table} shard" if self.table else "commit record"
        return f"batch {self.batch}: {where}: {self.reason}"


@dataclass
class CheckReport:
    store: str
    batches: int = 0
    shards: int = 0
    rows: int = 0
    problems: list = field(default_factory=list)        # [Problem]: damaged batches
    leftovers: list = field(default_factory=list)       # [str]: uncommitted shards, temporary files
    pending: list = field(default_factory=list)         # [batch]: unfinished replacements
    superseded: list = field(default_factory=list)      # [batch]: merged by a compaction, awaiting clean-up

    @property
    def damaged(self) -> "list[str]":
        return sorted({p.batch for p in self.problems})

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        """The report for ``bike check --format json``: ``ok``, the counts, and each problem as
        ``{"batch", "table" (null: the commit record), "reason"}``."""
        return {"store": self.store, "ok": self.ok, "batches": self.batches, "shards": self.shards,
                "rows": self.rows, "damaged": self.damaged,
                "problems": [{"batch": p.batch, "table": p.table, "reason": p.reason} for p in self.problems],
                "leftovers": list(self.leftovers), "pending": list(self.pending),
                "superseded": list(self.superseded)}

    def lines(self) -> "list[str]":
        out = [f"bike check: {self.store}: {self.batches} batches, {self.shards} shards, {self.rows} rows checked"]
        out += [f"bike check: damaged: {p.line()}" for p in self.problems]
        if self.leftovers:
            out.append(f"bike check: {len(self.leftovers)} files of no committed batch (a writer was killed; "
                       "the next `bike tag` or `bike repair` removes them), e.g. " + self.leftovers[0])
        if self.superseded:
            out.append(f"bike check: {len(self.superseded)} batch(es) merged by `bike compact`, not read any more; "
                       "their files are kept a grace period for running readers (the next `bike compact` or "
                       "`bike tag` removes them)")
        if self.pending:
            out.append(f"bike check: {len(self.pending)} replacement(s) left unfinished by a killed --force run "
                       "(readers already hide the replaced rows; the next `bike tag` or `bike repair` finishes "
                       "them)")
        if self.problems:
            out.append(f"bike check: {len(self.damaged)} damaged batch(es); readers leave them out. Fix: "
                       f"bike repair --store {self.store}  (sets them aside; the next `bike tag` tags their "
                       "videos again)")
        else:
            out.append("bike check: OK")
        return out


def _object_stats(store: Store, key: str) -> dict:
    """:func:`index.store.core.file_stats` of an object, streamed through the store's filesystem (index/store/storefs.py)."""
    with store.fs.arrow.open_input_stream(store.fs.arrow_path(key)) as f:
        return stream_stats(f)


def _shard_problem(store: Store, key: str, rows: int, stats: "dict | None", listed: "dict | None" = None
                   ) -> "str | None":
    """Why the shard ``key`` does not match its record, in full (size, SHA-256, Parquet footer, row count).
    ``listed``: on object storage, ``{name: size}`` of its table folder (existence from one listing)."""
    path = store.fs.path(key)
    if (listed.get(key.split("/", 1)[1]) is None) if listed is not None else not path.exists():
        return "missing"
    remote = listed is not None
    try:
        source = store.fs.arrow.open_input_file(store.fs.arrow_path(key)) if remote else path
        if stats and stats.get("sha256"):
            got = _object_stats(store, key) if remote else file_stats(path)
            if got["bytes"] != stats.get("bytes"):
                return f"{got['bytes']} bytes, the commit record says {stats.get('bytes')} (truncated or overwritten)"
            if got["sha256"] != stats["sha256"]:
                return "SHA-256 differs from the commit record (the file was changed or corrupted)"
            n = pq.read_metadata(source).num_rows
        else:                                          # no checksum recorded: decode every page instead
            n = read_parquet(source).num_rows
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a broken file
        return f"not a readable Parquet file ({str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__})"
    if n != rows:
        return f"{n} rows, the commit record says {rows}"
    return None


def check_store(store: Store) -> CheckReport:
    """Verify every committed batch in full (see the module docstring). On object storage every shard is
    streamed once through the hash; shards of no record are listed as leftovers (the next writer's recovery
    deletes them)."""
    store.commits(refresh=True)          # records, and which compactions readers trust (index/store/core.py)
    all_records, bad, superseded = store.records(), store.unreadable, store.superseded
    records = [r for r in all_records if r["batch"] not in superseded]
    report = CheckReport(str(store.root), superseded=sorted(superseded & ({r["batch"] for r in all_records}
                                                                           | set(bad))))
    bad_visible = {b: why for b, why in bad.items() if b not in superseded}
    report.batches = len(records) + len(bad_visible)
    for batch, why in bad_visible.items():
        report.problems.append(Problem(batch, None, why))
    known = {r["batch"] for r in all_records} | set(bad) | superseded
    listed: dict = {}
    for rec in records:
        if rec["batch"] in store.forged:           # hides batches whose rows it does not hold
            report.problems.append(Problem(rec["batch"], None, store.forged[rec["batch"]]))
            continue
        for table, n in sorted(rec["tables"].items()):
            if not n:
                continue
            if table not in TABLES:
                report.problems.append(Problem(rec["batch"], table, "unknown table in the commit record"))
                continue
            report.shards += 1
            if store.remote and table not in listed:
                listed[table] = store.fs.list(table)
            why = _shard_problem(store, store.shard_key(table, rec), int(n), (rec.get("files") or {}).get(table),
                                 listed.get(table) if store.remote else None)
            if why:
                report.problems.append(Problem(rec["batch"], table, why))
            else:
                report.rows += int(n)
        if not rec.get("cleaned", True):
            report.pending.append(rec["batch"])
    if store.remote:                 # immutable names: a shard no record names is a leftover (recover deletes it)
        named = {store.shard_key(t, r) for r in all_records for t in r["tables"]}
        keep = set(bad) | superseded
        for name in TABLES:
            for fname in sorted(store.fs.list(name)):
                key = f"{name}/{fname}"
                if fname.endswith(".parquet") and key not in named and fname.split(".", 1)[0] not in keep:
                    report.leftovers.append(str(store.fs.path(key)))
        return report
    for name in (*TABLES, COMMITS):
        d = store.root / name
        for p in sorted(d.iterdir()) if d.is_dir() else []:
            if p.name.endswith(".tmp") or (name != COMMITS and p.suffix == ".parquet" and p.stem not in known):
                report.leftovers.append(str(p))
    return report


@dataclass
class RepairReport:
    store: str
    quarantined: list = field(default_factory=list)     # [(batch, folder, videos, paths)]
    recovered: dict = field(default_factory=dict)       # Store.recover() counts

    def to_dict(self) -> dict:
        """The report for ``bike repair --format json``: each batch set aside (``folder``, ``videos`` to tag
        again, ``retag``: their paths) and what the recovery removed or finished."""
        return {"store": self.store,
                "quarantined": [{"batch": b, "folder": folder, "videos": n, "retag": list(paths)}
                                for b, folder, n, paths in self.quarantined],
                "recovered": dict(self.recovered)}

    def lines(self) -> "list[str]":
        out = []
        for batch, folder, videos, paths in self.quarantined:
            out.append(f"bike repair: batch {batch} set aside in {folder} ({videos} videos to tag again"
                       + (f", listed in {folder}/retag.txt" if paths else "") + ")")
        r = self.recovered
        if any(r.values()):
            out.append(f"bike repair: removed {r.get('uncommitted', 0)} uncommitted shards and {r.get('tmp', 0)} "
                       f"temporary files, finished {r.get('replacements', 0)} replacements")
        if self.quarantined:
            out.append("bike repair: run the same `bike tag SOURCES --store ...` again to tag those videos again")
        else:
            out.append("bike repair: nothing damaged; the store is consistent")
        return out


def _videos_of(store: Store, batch: str, record: "dict | None") -> "tuple[list[str], list[str]]":
    """(video ids, readable paths) of a batch, from its record and, when it can be read, its videos shard."""
    vids = sorted((record or {}).get("videos", {}))
    paths: list = []
    try:
        t = store.read_shard("videos", record or {"batch": batch}, columns=["video_id", "path"])
        paths = sorted({p for p in t["path"].to_pylist() if p})
        vids = vids or sorted(set(t["video_id"].to_pylist()))
    except Exception:  # noqa: BLE001 - damaged or missing: the record's ids are what we have
        pass
    return vids, paths


def _move_batch(store: Store, batch: str, folder: Path) -> None:
    """Move a batch's shards, then its commit record, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for table in TABLES:                               # shards first ...
        src = store.shard(table, batch)
        if src.exists():
            shutil.move(str(src), str(folder / f"{table}.parquet"))
    record = store.root / COMMITS / f"{batch}.json"
    if record.exists():                                # ... the commit record last
        shutil.move(str(record), str(folder / "commit.json"))


def _set_aside(store: Store, batch: str, record: "dict | None", folder: str, shards: bool = True,
               commit: bool = True) -> None:
    """Object storage: copy a batch's shards, then its record, into ``folder``, then delete its record,
    conditionally on its ETag. The shards, named by no record any more, go with the next recovery."""
    fs = store.fs
    for table in TABLES if shards else ():
        key = store.shard_key(table, record) if record else f"{table}/{batch}.parquet"
        if fs.size(key) is not None:
            fs.copy(key, f"{folder}/{table}.parquet")
    rec_key = f"{COMMITS}/{batch}.json"
    if commit and fs.size(rec_key) is not None:
        fs.copy(rec_key, f"{folder}/commit.json")
        if not fs.delete(rec_key, store._tags.get(batch)) and fs.size(rec_key) is not None:
            raise StoreError(f"{fs.path(rec_key)}: changed while it was being repaired; run `bike repair` again")


def _repair_objects(store: Store, check: CheckReport, records: dict, report: RepairReport) -> None:
    """:func:`repair_store` on object storage (no rename): each damaged batch's shards are copied into
    ``_quarantine/<batch>/``, then its record is copied and deleted, conditionally on its ETag. That delete is
    the repair's commit point: the batch's videos are no longer done, and its shards,
    named by no record any more, are deleted by the recovery that follows. A crash before it leaves the batch
    damaged, and a rerun repeats the copies."""
    fs = store.fs
    for batch in check.damaged:
        folder = f"{QUARANTINE}/{batch}"
        record = records.get(batch)
        vids, paths = _videos_of(store, batch, record)
        if paths:
            fs.write(f"{folder}/retag.txt", "".join(p + "\n" for p in paths).encode())
        fs.write(f"{folder}/why.json", json.dumps([p.line() for p in check.problems if p.batch == batch],
                                                  indent=1).encode())
        _set_aside(store, batch, record, folder, commit=False)               # its shards first ...
        _set_aside(store, batch, record, folder, shards=False)               # ... its record last
        report.quarantined.append((batch, str(fs.path(folder)), len(vids), paths))
    report.recovered = store.recover()


def repair_store(store: Store) -> RepairReport:
    """Quarantine every damaged batch, then let :meth:`Store.recover` clean up (takes the writer lock)."""
    report = RepairReport(str(store.root))
    with store.lock():
        check = check_store(store)
        records = {r["batch"]: r for r in store.records()}
        if store.remote:
            _repair_objects(store, check, records, report)
            return report
        for batch in check.damaged:
            folder = store.root / QUARANTINE / batch
            folder.mkdir(parents=True, exist_ok=True)
            vids, paths = _videos_of(store, batch, records.get(batch))
            retag = folder / "retag.txt"
            if retag.exists():                         # a second run after a crash: keep what the first found
                paths = sorted(set(paths) | set(filter(None, retag.read_text().splitlines())))
            if paths:
                retag.write_text("".join(p + "\n" for p in paths))
            _move_batch(store, batch, folder)          # its shards first (readers already skip it), record last
            with open(folder / "why.json", "w") as f:
                json.dump([p.line() for p in check.problems if p.batch == batch], f, indent=1)
            report.quarantined.append((batch, str(folder), len(vids), paths))
        if report.quarantined:
            fd = os.open(store.root / COMMITS, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        report.recovered = store.recover()
    return report
