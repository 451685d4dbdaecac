"""``bike compact --store DIR``: merge a store's small shards into large ones (index/store/compact.py)."""
from __future__ import annotations

from jobs import output
from jobs.cli.options import add_store_arg, command_parser, nonneg_float, positive_float

#: Defaults repeated here so that `bike --help` does not import pyarrow (index/store/compact.py holds the same).
TARGET_MB = 256
GRACE_S = 600.0


def register(sub) -> None:
    p = command_parser(
        sub, "compact", help="merge a store's small Parquet shards into large ones (safe while readers run)",
        description="Merge runs of small committed batches (one Parquet shard per table each) into large, "
                    "row-group-friendly shards per table and model, so that `bike sql` and `bike search` open "
                    "a few files instead of thousands. Atomic: readers running meanwhile see every row exactly "
                    "once; a kill at any moment loses nothing (the next run cleans up). The replaced files are "
                    "deleted --grace seconds later, by this or a later compaction. Damaged batches (see `bike "
                    "check`) are never merged: they are left alone for `bike repair`. `bike tag` runs this by "
                    "itself when the store passes --compact-at batches. Takes the store's writer lock.",
        examples=["bike compact --store tags/",
                  "bike compact --store tags/ --target-mb 64 --format json",
                  "bike compact --store tags/ --grace 0      # nothing reads the store: delete old files now"])
    add_store_arg(p)
    p.add_argument("--target-mb", type=positive_float, default=TARGET_MB, metavar="MB",
                   help="size of a merged shard group; batches at least this large are left alone")
    p.add_argument("--grace", type=nonneg_float, default=GRACE_S, metavar="SECONDS",
                   help="keep the files of merged batches this long for readers that listed them before "
                        "(0 deletes them at once: only when nothing reads the store)")
    output.add_format_arg(p, what="prints the report")
    p.set_defaults(func=run)


def _report_table(report, out) -> None:
    print(output.safe(f"bike: {report.line()}"), file=out)


def run(args) -> int:
    from index.store.compact import compact
    from index.store import Store
    report = compact(Store(args.store, warn=lambda msg: output.warn(f"bike: warning: {msg}")),
                     target_bytes=int(args.target_mb * 2**20), grace_s=args.grace,
                     log=lambda msg: output.info(f"bike: {msg}"))
    output.emit(report, args.format, table_fn=_report_table)
    return 0
