"""``bike check --store DIR``: verify every committed shard against its commit record (index/store/check.py)."""
from __future__ import annotations

from jobs import output
from jobs.cli.options import add_store_arg, command_parser


def register(sub) -> None:
    p = command_parser(
        sub, "check", help="verify a store: every shard against its commit record (sizes, checksums, row counts)",
        description="Read every committed shard of the store and compare it with its commit record: present, "
                    "same byte size and SHA-256, a readable Parquet file, the recorded row count. Lists damaged "
                    "batches (a forged or damaged compaction record among them), files of no batch and unfinished "
                    "replacements. Changes nothing. Exit status: 0 when the store is whole, 1 when a batch is "
                    "damaged (then: bike repair --store DIR).",
        examples=['bike check --store tags/', 'bike check --store tags/ --format json',
                  'bike check --store tags/ || bike repair --store tags/'])
    add_store_arg(p)
    output.add_format_arg(p, what="json: the whole report, with ok and every problem")
    p.set_defaults(func=run)


def _lines(report, out) -> None:
    for line in report.lines():
        print(output.safe(line), file=out)


def run(args) -> int:
    from index.store.check import check_store
    from index.store import Store
    report = check_store(Store(args.store, warn=lambda msg: None))
    output.emit(report, args.format, table_fn=_lines)
    return 0 if report.ok else 1
