"""``bike compact --store DIR``: merge a store's small shards into large ones (index/compact.py)."""
from __future__ import annotations

import sys

from ..errors import UsageError

#: Defaults repeated here so that `bike --help` does not import pyarrow (index/compact.py holds the same).
TARGET_MB = 256
GRACE_S = 600.0


def register(sub) -> None:
    p = sub.add_parser(
        "compact", help="merge a store's small Parquet shards into large ones (safe while readers run)",
        description="Merge runs of small committed batches (one Parquet shard per table each) into large, "
                    "row-group-friendly shards per table and model, so that `bike sql` and `bike search` open "
                    "a few files instead of thousands. Atomic: readers running meanwhile see every row exactly "
                    "once; a kill at any moment loses nothing (the next run cleans up). The replaced files are "
                    "deleted --grace seconds later, by this or a later compaction. `bike tag` runs this by "
                    "itself when the store passes --compact-at batches.")
    p.add_argument("--store", required=True, metavar="DIR", help="the store directory (from `bike tag`)")
    p.add_argument("--target-mb", type=float, default=TARGET_MB, metavar="MB",
                   help=f"size of a merged shard group; batches at least this large are left alone "
                        f"(default {TARGET_MB})")
    p.add_argument("--grace", type=float, default=GRACE_S, metavar="SECONDS",
                   help="keep the files of merged batches this long for readers that listed them before "
                        f"(default {GRACE_S:g}; 0 deletes them at once: only when nothing reads the store)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.target_mb <= 0:
        raise UsageError(f"--target-mb {args.target_mb:g}: give a size > 0")
    if args.grace < 0:
        raise UsageError(f"--grace {args.grace:g}: give 0 or more seconds")
    from index.compact import compact
    from index.store import Store
    report = compact(Store(args.store), target_bytes=int(args.target_mb * 2**20), grace_s=args.grace,
                     log=lambda msg: print(f"bike: {msg}", file=sys.stderr))
    print(f"bike: {report.line()}")
    return 0
