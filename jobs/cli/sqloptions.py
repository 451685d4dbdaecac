"""``--sql-memory``, ``--sql-timeout``, ``--sql-max-bytes``: the bounds on user SQL (index/store/sqlbox.py), as
typed options of ``bike sql``, ``bike search`` (its ``--where``) and ``bike serve`` (``/api/sql`` and
``where``). Each command gives its own defaults: the server's are tighter than the CLI's."""
from __future__ import annotations

import argparse
import re

from .options import positive_float


def byte_size(text: str) -> int:
    """argparse type: ``512MB``, ``2 GB``, ``64KiB`` or a number of bytes → bytes. Units are binary
    (1 MB = 2^20 bytes), as DuckDB's memory_limit reads them."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size like 512MB, 2GB or 64KB")
    n = int(float(m.group(1)) * (1 << (10 * " KMGT".index(m.group(2).upper() or " "))))
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1 byte")
    return n


def add_sql_limit_args(p, memory: str, seconds: float, max_bytes: "str | None", what: str = "the query") -> None:
    """The options on parser ``p``, with these defaults (``what`` names what they bound in --help);
    ``max_bytes=None``: no --sql-max-bytes (a --where filter returns clip ids, not a result to print)."""
    g = p.add_argument_group("SQL limits", f"bounds on {what}; past one it stops with an error naming it")
    g.add_argument("--sql-memory", type=byte_size, default=byte_size(memory), metavar="SIZE",
                   help=f"memory one query may use (DuckDB memory_limit and a cap on its process; default {memory})")
    g.add_argument("--sql-timeout", type=positive_float, default=seconds, metavar="S",
                   help=f"seconds one query may run, result included (default {seconds:g})")
    if max_bytes is not None:
        g.add_argument("--sql-max-bytes", type=byte_size, default=byte_size(max_bytes), metavar="SIZE",
                       help=f"largest result of one query, serialized (default {max_bytes})")


def sql_limits(args, **extra):
    """``index.store.sqlbox.SQLLimits`` of the parsed options (``extra``: its other fields, e.g. rows)."""
    from index.store.sqlbox import SQLLimits
    if getattr(args, "sql_max_bytes", None) is not None:
        extra["max_bytes"] = args.sql_max_bytes
    return SQLLimits(memory_bytes=args.sql_memory, seconds=args.sql_timeout, **extra)
