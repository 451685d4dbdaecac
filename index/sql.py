"""Read-only SQL over a store: DuckDB in-process, one view per table (``Store.connect``).

Two layers keep a query from writing or reading anything but the store:

1. **DuckDB's own configuration** (:func:`connect_readonly` → ``index.store.sandboxed_duckdb``): external
   access is off except for the store's committed shard files (``enable_external_access = false`` +
   ``allowed_paths``), so ``read_text('/etc/passwd')``, ``glob``, ``read_csv``, ``COPY ... TO``, ``ATTACH`` and
   ``EXPORT`` fail with a permission error whatever statement carries them (``EXPLAIN ANALYZE COPY`` too);
   extensions are neither installed nor loaded automatically, ``LOAD``/``INSTALL`` are refused; nothing
   spills to disk; and ``lock_configuration`` makes every ``SET``/``RESET``/``PRAGMA`` that would change this
   fail.
2. **Statement inspection**, as a second layer: ``SELECT`` (including ``WITH``, ``VALUES``, ``DESCRIBE``, ``SHOW``,
``SUMMARIZE``, which DuckDB parses as selects) and ``EXPLAIN``. Anything that writes or changes the session
(INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, COPY, ATTACH, EXPORT, IMPORT, SET, PRAGMA, INSTALL, LOAD,
CALL, ...) is refused before anything runs. The check uses DuckDB's own parser
(``duckdb.extract_statements`` → statement type), so comments, case and multi-statement input cannot
slip a write through. ``EXPLAIN ANALYZE`` runs its statement, so it is only allowed around a SELECT.

    >>> columns, rows = query(Store("tags/"), "SELECT label, count(*) FROM labels WHERE rank = 0 GROUP BY 1")
"""
from __future__ import annotations

import re

import duckdb

#: Statement types that only read.
READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class SQLError(ValueError):
    """A query that was refused or failed; the message says why and what to do."""


def check_read_only(sql: str) -> list:
    """Parse ``sql`` and return its statements; raise :class:`SQLError` when one would write."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise SQLError(f"cannot parse the query: {e}") from None
    if not statements:
        raise SQLError("empty query: give a SELECT statement")
    for st in statements:
        analyze = re.match(r"\s*EXPLAIN\s+ANALY[SZ]E\s+(.*)", st.query, re.IGNORECASE | re.DOTALL)
        if analyze:
            try:
                nested = duckdb.extract_statements(analyze.group(1))
            except duckdb.Error:
                nested = []
            if len(nested) != 1 or nested[0].type != duckdb.StatementType.SELECT:
                raise SQLError("refused: EXPLAIN ANALYZE runs its statement; `bike sql` is read-only, so it is "
                               "only allowed around a SELECT")
        if st.type not in READ_ONLY:
            kind = st.type.name.replace("_STATEMENT", "").replace("_", " ")
            raise SQLError(f"refused: {kind} statements are not allowed; `bike sql` is read-only "
                           "(SELECT, WITH ... SELECT, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN are). "
                           "To change the store, use bike tag / relabel.")
    return statements


def connect_readonly(store):
    """A sandboxed DuckDB connection with the store's views (see the module docstring): for every reader
    that runs SQL it did not write itself (``bike sql``, the HTTP server)."""
    return store.connect()


def query(store, sql: str) -> "tuple[list[str], list[tuple]]":
    """Run a read-only query against ``store`` (an ``index.store.Store``) → (column names, rows).
    With several statements, the result of the last one is returned."""
    statements = check_read_only(sql)
    con = connect_readonly(store)
    try:
        rel = None
        for st in statements:
            rel = con.execute(st.query)
        columns = [d[0] for d in rel.description] if rel.description else []
        return columns, rel.fetchall()
    except duckdb.Error as e:
        raise SQLError(f"query failed: {str(e).strip()}\n(tables: videos, clips, labels, attributes, "
                       "embeddings, models; `bike sql --store DIR --schema` lists their columns)") from None
    finally:
        con.close()


def schema_text(store) -> str:
    """The views and their columns, for ``bike sql --schema``."""
    from .schema import DERIVED, TABLES
    lines = []
    for name, schema in [*TABLES.items(), *((n, sch) for n, (_, sch) in DERIVED.items())]:
        lines.append(f"{name}:")
        lines += [f"  {f.name:<18} {f.type}" for f in schema]
    return "\n".join(lines)
