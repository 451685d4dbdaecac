"""``bike sql --store DIR "SELECT ..."``: read-only SQL over a store's tables (DuckDB views)."""
from __future__ import annotations

import csv
import json
import math
import sys

#: Longest cell in the table format; longer values (embeddings, saliency lists) are cut with "…".
MAX_CELL = 60


def register(sub) -> None:
    p = sub.add_parser(
        "sql", help="read-only SQL over a store (DuckDB)",
        description="Run a read-only SQL query against the store's views: videos, clips, labels, attributes, "
                    "embeddings, models (docs/tagging.md has example queries). Statements that write are "
                    "refused.",
        epilog="example:\n  bike sql --store tags/ \"SELECT label, count(*) AS n FROM labels WHERE rank = 0 "
               "GROUP BY label ORDER BY n DESC LIMIT 10\"",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("query", nargs="?", help="SQL (quote it); '-' reads it from stdin")
    p.add_argument("--store", required=True, metavar="DIR", help="store directory")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="table (aligned text, long values cut), csv, or json (one array of objects)")
    p.add_argument("--schema", action="store_true", help="list the tables and their columns")
    p.set_defaults(func=run)


def _cell(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        s = "[" + ", ".join(_cell(x) for x in v[:16]) + (", …" if len(v) > 16 else "") + "]"
    else:
        s = str(v)
    s = s.replace("\n", " ")
    return s if len(s) <= MAX_CELL else s[:MAX_CELL - 1] + "…"


def print_table(columns, rows, out=None) -> None:
    out = out or sys.stdout                  # looked up per call (tests and notebooks swap sys.stdout)
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=out)
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=out)


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)                       # timestamps, decimals, ...


def run(args) -> int:
    from index.sql import SQLError, query, schema_text
    from index.store import Store

    from ..errors import UsageError
    store = Store(args.store)
    if args.schema:
        print(schema_text(store))
        return 0
    sql = sys.stdin.read() if args.query == "-" else args.query
    if not sql:
        raise UsageError("give a query, e.g. bike sql --store DIR \"SELECT * FROM videos LIMIT 5\" "
                         "(or --schema to list the tables)")
    try:
        columns, rows = query(store, sql)
    except SQLError as e:
        raise UsageError(str(e)) from None
    if args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows([[("" if v is None else json.dumps(_json_value(v)) if isinstance(v, (list, dict)) else v)
                      for v in row] for row in rows])
    elif args.format == "json":
        json.dump([{c: _json_value(v) for c, v in zip(columns, row)} for row in rows], sys.stdout)
        print()
    else:
        print_table(columns, rows)
    return 0
