"""Verify a store against its commit records (``bike check``) and set damaged batches aside (``bike repair``).

What is checked, per committed batch (``STORE/_commits/<batch>.json``):

* the commit record itself can be read;
* every shard it names exists, has the byte size and SHA-256 the record holds (records written before
  checksums existed: the shard is read in full instead), is a Parquet file, and holds the row count the
  record says.

Anything else in the table folders is reported too: shards of no batch (a writer killed before its commit
record; the next writer's ``Store.recover`` deletes them) and replacements a killed ``--force`` run left
unfinished (``recover`` finishes them).

Repair. A damaged batch cannot be trusted in part (a batch is all-or-nothing), so :func:`repair_store` moves
ALL of its shards, then its commit record, into ``STORE/_quarantine/<batch>/`` — nothing is deleted — and
writes there ``retag.txt``, the paths of its videos when its ``videos`` shard is still readable. Without a
commit record its videos are no longer "done": the next ``bike tag`` over the same sources tags them again.
Shards move first and the record last, so a crash in the middle leaves a batch that readers already skip as
damaged, and a second ``bike repair`` finishes the move.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from .schema import TABLES
from .store import COMMITS, QUARANTINE, Store, file_stats


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

    @property
    def damaged(self) -> "list[str]":
        return sorted({p.batch for p in self.problems})

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> "list[str]":
        out = [f"bike check: {self.store}: {self.batches} batches, {self.shards} shards, {self.rows} rows checked"]
        out += [f"bike check: damaged: {p.line()}" for p in self.problems]
        if self.leftovers:
            out.append(f"bike check: {len(self.leftovers)} files of no committed batch (a writer was killed; "
                       "the next `bike tag` or `bike repair` removes them), e.g. " + self.leftovers[0])
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


def _shard_problem(path: Path, rows: int, stats: "dict | None") -> "str | None":
    if not path.exists():
        return "missing"
    try:
        if stats and stats.get("sha256"):
            got = file_stats(path)
            if got["bytes"] != stats.get("bytes"):
                return f"{got['bytes']} bytes, the commit record says {stats.get('bytes')} (truncated or overwritten)"
            if got["sha256"] != stats["sha256"]:
                return "SHA-256 differs from the commit record (the file was changed or corrupted)"
            n = pq.read_metadata(path).num_rows
        else:                                          # no checksum recorded: decode every page instead
            n = pq.read_table(path).num_rows
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a broken file
        return f"not a readable Parquet file ({str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__})"
    if n != rows:
        return f"{n} rows, the commit record says {rows}"
    return None


def check_store(store: Store) -> CheckReport:
    """Verify every committed batch in full (see the module docstring)."""
    records, bad = store._read_records()
    report = CheckReport(str(store.root), batches=len(records) + len(bad))
    for batch, why in bad.items():
        report.problems.append(Problem(batch, None, why))
    known = {r["batch"] for r in records} | set(bad)
    for rec in records:
        for table, n in sorted(rec["tables"].items()):
            if not n:
                continue
            if table not in TABLES:
                report.problems.append(Problem(rec["batch"], table, "unknown table in the commit record"))
                continue
            report.shards += 1
            why = _shard_problem(store.shard(table, rec["batch"]), int(n), (rec.get("files") or {}).get(table))
            if why:
                report.problems.append(Problem(rec["batch"], table, why))
            else:
                report.rows += int(n)
        if not rec.get("cleaned", True):
            report.pending.append(rec["batch"])
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
        t = pq.read_table(store.shard("videos", batch), columns=["video_id", "path"])
        paths = sorted({p for p in t["path"].to_pylist() if p})
        vids = vids or sorted(set(t["video_id"].to_pylist()))
    except Exception:  # noqa: BLE001 - damaged or missing: the record's ids are what we have
        pass
    return vids, paths


def repair_store(store: Store) -> RepairReport:
    """Quarantine every damaged batch, then let :meth:`Store.recover` clean up (takes the writer lock)."""
    report = RepairReport(str(store.root))
    with store.lock():
        check = check_store(store)
        records = {r["batch"]: r for r in store._read_records()[0]}
        for batch in check.damaged:
            folder = store.root / QUARANTINE / batch
            folder.mkdir(parents=True, exist_ok=True)
            vids, paths = _videos_of(store, batch, records.get(batch))
            if paths:
                (folder / "retag.txt").write_text("".join(p + "\n" for p in paths))
            for table in TABLES:                       # shards first ...
                src = store.shard(table, batch)
                if src.exists():
                    shutil.move(str(src), str(folder / f"{table}.parquet"))
            record = store.root / COMMITS / f"{batch}.json"
            if record.exists():                        # ... the commit record last
                shutil.move(str(record), str(folder / "commit.json"))
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
