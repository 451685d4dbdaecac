"""``GET /api/sql``: the read-only SQL of ``bike sql``, bounded in rows, memory, time and bytes.

Two layers, as in ``bike sql``: the statement check of index/store/sql.py (``check_read_only``: only SELECT-like
statements), and — what actually holds — a connection sandboxed in DuckDB's own configuration
(``index.store.core.sandboxed_duckdb``: it can read the store's committed shards and no other file, write no
file, attach nothing, load no extension, and cannot change that configuration). The query runs in a child
process (index/store/sqlbox.py: a pool of warm ones), so a query that blows up costs that process, never the server's: a
query gets at most ``Limits.sql_rows`` rows (``truncated`` says when more existed), ``Limits.sql_memory_bytes``
of memory (413), ``Limits.sql_seconds`` for the query and its result (408), and its JSON answer
at most ``Limits.sql_max_bytes`` (413); at most ``Limits.sql_workers`` run at once (503 after waiting).
"""
from __future__ import annotations

from index.store.sql import SQLError
from index.store.sqlbox import Sandbox, jsonable  # noqa: F401 - jsonable: the server's value → JSON rule

from .limits import Limits


def run_sql(sandbox: Sandbox, store, sql: str, limits: Limits) -> bytes:
    """The JSON body of ``/api/sql`` for ``sql`` on ``store`` →
    ``{"columns", "rows", "truncated", "row_limit", "seconds"}``. Raises :class:`index.store.sql.SQLError`
    (refused or failed) or ``index.store.sqlbox.SQLLimitError`` (over a bound; its ``status`` is the HTTP one)."""
    if len(sql) > limits.max_sql_chars:
        raise SQLError(f"query too long ({len(sql)} characters; at most {limits.max_sql_chars})")
    return sandbox.json(store, sql)
