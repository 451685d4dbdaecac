"""Read-only SQL over a store: DuckDB in-process, one view per table (``Store.connect``).

Two layers keep a query from writing or reading anything but the store:

1. **DuckDB's own configuration** (:func:`connect_readonly` → ``index.store.core.sandboxed_duckdb``): external
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


#: Said after a failed query: what there is to query.
TABLES_HINT = ("tables: videos, clips, labels, attributes, embeddings, models, transcripts; `bike sql --store DIR --schema` "
               "lists their columns")

#: Where DuckDB's messages start advice that does not apply to a sandboxed connection (its configuration is
#: locked, so "SET threads=X" cannot be followed).
_ADVICE = ("\nPossible solutions:", "\nSee also ")


def error_text(e) -> str:
    """DuckDB's message for ``e``, with real line breaks (``LINE 1: ...`` and its caret under the spot) and
    without its advice to change settings that are locked here."""
    text = str(e).replace("\r\n", "\n").strip()
    for cut in _ADVICE:
        if cut in text:
            text = text[:text.index(cut)].rstrip()
    return text


def one_line(message: str) -> str:
    """``message`` (e.g. from :func:`error_text`) as one readable line, for the CLI's ``bike: error:`` rule:
    the lines joined with "; ", and a ``LINE n: ...`` line with its caret line below turned into
    ``at "<the marked text>" in line n: ...``."""
    lines = [ln.rstrip() for ln in str(message).splitlines()]
    out: "list[str]" = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith("LINE ") and ":" in line and nxt.strip() and set(nxt.strip()) <= {"^"}:
            head, _, text = line.partition(": ")
            start = len(nxt) - len(nxt.lstrip()) - (len(head) + 2)
            marked = text[max(0, start):max(0, start) + len(nxt.strip())]
            out.append(f'at "{marked}" in {head.lower()}: {text.strip()}' if marked.strip()
                       else f"{head.lower()}: {text.strip()}")
            i += 2
            continue
        if line.strip():
            out.append(line.strip())
        i += 1
    return "; ".join(out)


def query(store, sql: str, limits=None) -> "tuple[list[str], list[tuple]]":
    """Run a read-only query against ``store`` (an ``index.store.core.Store``) → (column names, rows), bounded
    in memory, time and result size by ``limits`` (``index.store.sqlbox.SQLLimits``; default: its defaults), in
    a child process (index/store/sqlbox.py). With several statements, the result of the last one is returned.
    Raises :class:`SQLError` (``index.store.sqlbox.SQLLimitError`` for a bound)."""
    from .sqlbox import Sandbox, SQLLimits
    columns, rows, _ = Sandbox(limits or SQLLimits()).rows(store, sql)
    return columns, rows


def schema_text(store) -> str:
    """The views and their columns, for ``bike sql --schema``."""
    from .schema import DERIVED, TABLES
    lines = []
    for name, schema in [*TABLES.items(), *((n, sch) for n, (_, sch) in DERIVED.items())]:
        lines.append(f"{name}:")
        lines += [f"  {f.name:<18} {f.type}" for f in schema]
    return "\n".join(lines)
