"""Read-only SQL over a store: DuckDB in-process, one view per table (``Store.connect``).

Only statements that read are run: ``SELECT`` (including ``WITH``, ``VALUES``, ``DESCRIBE``, ``SHOW``,
``SUMMARIZE``, which DuckDB parses as selects) and ``EXPLAIN``. Anything that writes or changes the session
(INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, COPY, ATTACH, EXPORT, IMPORT, SET, PRAGMA, INSTALL, LOAD,
CALL, ...) is refused before anything runs. The check uses DuckDB's own parser
(``duckdb.extract_statements`` → statement type), so comments, case and multi-statement input cannot
slip a write through.

    >>> columns, rows = query(Store("tags/"), "SELECT label, count(*) FROM labels WHERE rank = 0 GROUP BY 1")
"""
from __future__ import annotations

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
        if st.type not in READ_ONLY:
            kind = st.type.name.replace("_STATEMENT", "").replace("_", " ")
            raise SQLError(f"refused: {kind} statements are not allowed; `bike sql` is read-only "
                           "(SELECT, WITH ... SELECT, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN are). "
                           "To change the store, use bike tag / relabel.")
    return statements


def query(store, sql: str) -> "tuple[list[str], list[tuple]]":
    """Run a read-only query against ``store`` (an ``index.store.Store``) → (column names, rows).
    With several statements, the result of the last one is returned."""
    statements = check_read_only(sql)
    con = store.connect()
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
    from .schema import TABLES
    lines = []
    for name, schema in TABLES.items():
        lines.append(f"{name}:")
        lines += [f"  {f.name:<18} {f.type}" for f in schema]
    return "\n".join(lines)
