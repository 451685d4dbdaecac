"""``bike repair --store DIR``: set damaged batches aside and mark their videos for tagging again."""
from __future__ import annotations

from jobs import output
from jobs.cli.options import add_store_arg, command_parser


def register(sub) -> None:
    p = command_parser(
        sub, "repair", help="quarantine damaged batches of a store; their videos are tagged again by the next bike tag",
        description="Run the checks of `bike check`; move every damaged batch (all its shards, then its commit "
                    "record) into STORE/_quarantine/<batch>/ with retag.txt listing its videos (nothing is "
                    "deleted); remove files of no batch and finish replacements a killed run left. The next "
                    "`bike tag` over the same sources tags the set-aside videos again. Takes the store's "
                    "writer lock.",
        examples=['bike repair --store tags/', 'bike repair --store tags/ --format json',
                  'bike repair --store tags/ && bike tag ~/videos --store tags/'])
    add_store_arg(p)
    output.add_format_arg(p, what="json: the batches set aside and what the recovery did")
    p.set_defaults(func=run)


def _lines(report, out) -> None:
    for line in report.lines():
        print(output.safe(line), file=out)


def run(args) -> int:
    from index.store.check import repair_store
    from index.store import Store
    report = repair_store(Store(args.store, warn=lambda msg: None))
    output.emit(report, args.format, table_fn=_lines)
    return 0
