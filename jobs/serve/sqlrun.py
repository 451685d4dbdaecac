"""``GET /api/sql``: the read-only SQL of ``bike sql``, bounded in rows and time.

Two layers, as in ``bike sql``: the statement check of index/sql.py (``check_read_only``: only SELECT-like
statements), and — what actually holds — a connection sandboxed in DuckDB's own configuration
(``index.search.readonly_connection``: it can read the store's committed shards and no other file, write no
file, attach nothing, load no extension, and cannot change that configuration). A query gets at most
``Limits.sql_rows`` rows (``truncated`` says when more existed) and is interrupted after
``Limits.sql_seconds``.
"""
from __future__ import annotations

import datetime
import decimal
import math
import threading
import uuid

from index.sql import SQLError, check_read_only

from .limits import Limits


def jsonable(v):
    """A DuckDB value → something ``json.dumps`` writes (NaN/inf → None, dates → ISO text, bytes → hex)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, (decimal.Decimal, uuid.UUID, datetime.timedelta)):
        return str(v)
    try:                                             # numpy scalars
        return jsonable(v.item())
    except AttributeError:
        return str(v)


def run_sql(connect, sql: str, limits: Limits) -> dict:
    """Run ``sql`` on a fresh connection from ``connect()`` → {"columns", "rows", "truncated", "seconds"}.
    Raises :class:`index.sql.SQLError` (refused, failed, or over the time limit)."""
    import time

    import duckdb
    if len(sql) > limits.max_sql_chars:
        raise SQLError(f"query too long ({len(sql)} characters; at most {limits.max_sql_chars})")
    statements = check_read_only(sql)
    con = connect()
    timed_out = threading.Event()

    def interrupt():
        timed_out.set()
        con.interrupt()

    timer = threading.Timer(limits.sql_seconds, interrupt)
    t0 = time.perf_counter()
    timer.start()
    try:
        rel = None
        for st in statements:
            rel = con.execute(st.query)
        columns = [d[0] for d in rel.description] if rel.description else []
        rows = rel.fetchmany(limits.sql_rows + 1) if columns else []
    except duckdb.Error as e:
        if timed_out.is_set():
            raise SQLError(f"query stopped after the time limit of {limits.sql_seconds:g} s; narrow it "
                           "(WHERE, LIMIT) or aggregate") from None
        raise SQLError(f"query failed: {str(e).strip().splitlines()[0]} (tables: videos, clips, labels, "
                       "attributes, embeddings, models)") from None
    finally:
        timer.cancel()
        con.close()
    truncated = len(rows) > limits.sql_rows
    rows = rows[:limits.sql_rows]
    return {"columns": columns, "rows": [[jsonable(v) for v in r] for r in rows], "truncated": truncated,
            "row_limit": limits.sql_rows, "seconds": round(time.perf_counter() - t0, 4)}
