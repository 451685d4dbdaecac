"""``bike sql --store DIR "SELECT ..."``: read-only SQL over a store's tables (DuckDB views)."""
from __future__ import annotations

import os
import sys

from jobs import output
from jobs.cli.options import add_store_arg, command_parser
from jobs.cli.sqloptions import add_sql_limit_args, sql_limits

#: ``--out`` file kinds, by extension.
OUT_KINDS = (".parquet", ".csv", ".json", ".jsonl")


def register(sub) -> None:
    p = command_parser(
        sub, "sql", help="read-only SQL over a store (DuckDB)",
        description="Run a read-only SQL query against the store's views: videos, clips, labels, attributes, "
                    "embeddings, models (docs/tagging.md has example queries). Statements that write are "
                    "refused; --out FILE saves the result (.parquet, .csv, .json or .jsonl) outside the store. "
                    "A query runs in a process of its own, bounded in memory, time and result size "
                    "(--sql-memory, --sql-timeout, --sql-max-bytes); past a bound it stops with an error.",
        examples=["bike sql --store tags/ \"SELECT label, count(*) AS n FROM labels WHERE rank = 0 "
                  "GROUP BY label ORDER BY n DESC LIMIT 10\"",
                  "bike sql --store tags/ \"SELECT * FROM labels WHERE rank = 0\" --out labels.parquet",
                  "bike sql --store tags/ \"SELECT path, error FROM videos WHERE status = 'error'\" --format csv",
                  "bike sql --store tags/ --schema"])
    p.add_argument("query", nargs="?", help="SQL (quote it); '-' reads it from stdin")
    add_store_arg(p)
    output.add_format_arg(p, what="table cuts long values")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the result to FILE instead of printing it: .parquet, .csv, .json or .jsonl")
    p.add_argument("--schema", action="store_true", help="list the tables and their columns")
    add_sql_limit_args(p, memory="1GB", seconds=60.0, max_bytes="64MB")
    p.set_defaults(func=run)


def print_table(columns, rows, out=None) -> None:
    output.table(columns, rows, out)


def write_result(path: str, columns, rows) -> None:
    """The result as a file (written under a temporary name, then renamed: never half a file)."""
    from jobs.errors import UsageError
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUT_KINDS:
        raise UsageError(f"--out {path}: give a file ending in {', '.join(OUT_KINDS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--out {path}: folder {folder} does not exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        if ext == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            data = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
            pq.write_table(pa.table(data) if rows else pa.table({c: pa.array([], pa.null()) for c in columns}),
                           tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                output.emit_rows(columns, rows, ext.lstrip("."), out=f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(args) -> int:
    from index.store.sql import SQLError, one_line, query, schema_text
    from index.store import Store

    from jobs.errors import UsageError
    store = Store(args.store)
    if args.schema:
        print(schema_text(store))
        return 0
    sql = sys.stdin.read() if args.query == "-" else args.query
    if not sql:
        raise UsageError("give a query, e.g. bike sql --store DIR \"SELECT * FROM videos LIMIT 5\" "
                         "(or --schema to list the tables)")
    try:
        columns, rows = query(store, sql, sql_limits(args))     # a corrupt shard: left out (index/store/sqlbox.py)
    except SQLError as e:                        # DuckDB's lines (LINE 1: ... and its caret) as one line
        raise UsageError(one_line(str(e))) from None
    if args.out:
        write_result(args.out, columns, rows)
        output.info(f"bike: {len(rows)} row(s) → {output.safe(os.path.abspath(args.out))}")
    else:
        output.emit_rows(columns, rows, args.format)
    return 0
