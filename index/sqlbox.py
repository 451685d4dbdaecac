"""User SQL under hard bounds: memory, time and result size, in a child process of its own.

Every piece of SQL that someone else wrote (``bike sql``, ``GET /api/sql``, a ``--where`` condition in
``bike search`` and ``bike serve``) runs here. DuckDB's own settings are not enough on their own: its
``memory_limit`` governs the buffer manager, but a scalar function such as ``list_sum(range(150000000))``
or ``repeat('x', 20000000)`` allocates outside it, and ``interrupt()`` is only looked at between chunks of
rows, so one such expression grew a process by 10 GB and ran 75 s past a 5 s limit. So each query runs in a
short-lived child process, ``python -m index.sqlbox`` (a fresh interpreter, never a fork of the caller, which
may have threads; about 0.2 s to start), that gets the job on stdin and answers on stdout:

* **memory**: the child's address space is capped (``RLIMIT_AS``: what it has mapped after opening the
  store, plus :attr:`SQLLimits.memory_bytes`), and DuckDB gets the same ``memory_limit``, ``threads`` and no
  spilling (set before ``lock_configuration``, ``index.store.sandboxed_duckdb``). An allocation past the cap
  fails inside the child, which reports it; the caller's process never holds the query's memory.
* **time**: :attr:`SQLLimits.seconds` covers the whole run (start, opening the store, the query, fetching
  and serializing the result). The child interrupts DuckDB at the deadline (``con.interrupt()`` from a
  timer thread); the caller kills the child shortly after if it has not answered (a function DuckDB cannot
  interrupt).
* **result size**: the child serializes the result (JSON for the server, pickled rows for the CLI) and
  stops as soon as it passes :attr:`SQLLimits.max_bytes`; the caller reads at most that much.
* **concurrency**: a :class:`Sandbox` runs at most :attr:`SQLLimits.workers` children at once; a query
  that finds no free slot within its time limit is refused as busy. Memory in use by SQL is therefore at
  most ``workers × memory_bytes`` plus each child's base (~100 MB).

Errors are :class:`SQLLimitError` (``kind``: ``time``, ``memory``, ``bytes`` or ``busy``; ``status``: the
HTTP status the server answers with) or the usual :class:`index.sql.SQLError` /
:class:`index.where.WhereError` for a query that is refused or fails.

    >>> box = Sandbox(SQLLimits(memory_bytes=256 << 20, seconds=5))
    >>> columns, rows, truncated = box.rows(store, "SELECT label, count(*) FROM labels GROUP BY 1")
"""
from __future__ import annotations

import datetime
import decimal
import json
import math
import os
import pickle
import threading
import time
import uuid
from dataclasses import dataclass

from .sql import TABLES_HINT, SQLError, check_read_only, error_text

#: Address space a child may map beyond its size after opening the store, on top of ``memory_bytes``: the
#: allocators reserve address space ahead of use (a 40 MB result failed under 64 MB of slack), and Python
#: holds the result being serialized.
SLACK_BYTES = 256 << 20
#: How long after the deadline the caller waits for the child's own answer before killing it.
GRACE_S = 0.5


@dataclass(frozen=True)
class SQLLimits:
    """Bounds on one piece of user SQL (see the module docstring)."""
    memory_bytes: int = 512 << 20        # DuckDB memory_limit and the child's address-space cap above its base
    seconds: float = 5.0                 # wall time of the whole run, result included
    max_bytes: int = 16 << 20            # serialized result (JSON body / pickled rows)
    threads: int = 1                     # DuckDB threads per query
    workers: int = 4                     # queries running at once per Sandbox (more wait, then are refused)
    rows: "int | None" = None            # rows returned (more are cut and flagged); None: all


class SQLLimitError(SQLError):
    """A query stopped by a bound; ``kind`` is time, memory, bytes or busy; ``status`` its HTTP status."""
    STATUS = {"time": 408, "memory": 413, "bytes": 413, "busy": 503}

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.status = kind, self.STATUS[kind]


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


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


# ---- the caller's side ------------------------------------------------------------------------------------
class Sandbox:
    """Runs user SQL against a store in bounded child processes; one per service or command (it holds the
    slots that cap how many run at once). Thread-safe."""

    def __init__(self, limits: SQLLimits = SQLLimits()):
        self.limits = limits
        self._slots = threading.BoundedSemaphore(max(1, limits.workers))

    def json(self, store, sql: str) -> bytes:
        """The JSON body of ``GET /api/sql``: ``{"columns", "rows", "truncated", "row_limit", "seconds"}``."""
        check_read_only(sql)                         # refused before a process starts
        return self._run(store, {"kind": "sql", "sql": sql, "format": "json"})

    def rows(self, store, sql: str) -> "tuple[list[str], list[tuple], bool]":
        """(column names, rows, truncated) of ``sql`` (the last statement's result)."""
        check_read_only(sql)
        return self._run(store, {"kind": "sql", "sql": sql, "format": "rows"})

    def where(self, store, model_id: str, condition: str) -> "list[str]":
        """``index.where.filter_clips`` under the bounds: the clip ids the condition keeps."""
        return self._run(store, {"kind": "where", "model_id": model_id, "condition": condition})

    def _run(self, store, job: dict):
        lim = self.limits
        t0 = time.monotonic()
        deadline = t0 + lim.seconds
        if not self._slots.acquire(timeout=lim.seconds):
            raise SQLLimitError("busy", f"busy: {lim.workers} queries are running; try again in a moment")
        try:
            store.commits()                          # damaged batches are warned about here, once, by the caller
            cap = lim.max_bytes if job["kind"] == "sql" else lim.memory_bytes   # clip ids: as many as the store has
            for attempt in range(3):
                job = {**job, "store": str(store.root), "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
                       "limits": lim, "deadline_s": max(0.05, deadline - time.monotonic()), "answer_cap": cap,
                       "bad_shards": dict(getattr(store, "_bad_shards", {}))}
                kind, payload = _in_child(job, deadline + GRACE_S, lim)
                if kind != "damaged":
                    break
                # A shard that does not decode although its size is right: the caller's store finds it (full
                # check, one warning naming the batch, left out from now on) and the query runs again without it.
                if attempt == 2 or not store.find_unreadable():
                    kind, payload = "error", f"query failed: {payload}\n({TABLES_HINT})"
                    break
        finally:
            self._slots.release()
        if kind == "ok":
            if job.get("format") == "json":      # the body with the seconds spliced in (they include the start)
                return payload[:-1] + f',"seconds":{round(time.monotonic() - t0, 4)}}}'.encode()
            return payload
        if kind in SQLLimitError.STATUS:
            raise SQLLimitError(kind, payload)
        if kind == "where":
            from .where import WhereError
            raise WhereError(payload)
        raise SQLError(payload)


def _in_child(job: dict, kill_at: float, lim: SQLLimits) -> "tuple[str, object]":
    """Run ``job`` in a child process (``python -m index.sqlbox``: a fresh interpreter, ~0.2 s to start,
    never a fork of this possibly multi-threaded process); (kind, payload) of its answer, or of its death."""
    import selectors
    import subprocess
    import sys
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # where `index` is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "index.sqlbox"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, close_fds=True)
    cap = job["answer_cap"] + (1 << 20)              # the answer's size: the result plus its framing
    data: "list[bytes]" = []
    size = 0
    try:
        proc.stdin.write(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        proc.stdin.close()
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            fd = proc.stdout.fileno()
            while True:
                left = kill_at - time.monotonic()
                if left <= 0:
                    return "time", _time_message(lim)
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                data.append(chunk)
                size += len(chunk)
                if size > cap:
                    return "bytes", _bytes_message(lim)
        try:
            raw = b"".join(data)
            data.clear()
            return pickle.loads(raw)
        except Exception:  # noqa: BLE001 - no (whole) answer: the child died
            proc.wait(2.0)
            sig = -proc.returncode if proc.returncode is not None and proc.returncode < 0 else None
            return "memory", _memory_message(lim, f" (the query process died{f' of signal {sig}' if sig else ''})")
    except BrokenPipeError:
        proc.wait(2.0)
        return "memory", _memory_message(lim, " (the query process died)")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _time_message(lim: SQLLimits) -> str:
    return (f"query stopped after the time limit of {lim.seconds:g} s; narrow it (WHERE, LIMIT) or aggregate, "
            "or raise --sql-timeout")


def _memory_message(lim: SQLLimits, detail: str = "") -> str:
    return (f"query stopped: it needs more than the memory limit of {human_bytes(lim.memory_bytes)}{detail}; "
            "narrow it or raise --sql-memory")


def _bytes_message(lim: SQLLimits) -> str:
    return (f"result too large: over the limit of {human_bytes(lim.max_bytes)}; select fewer rows or columns "
            "(LIMIT), or raise --sql-max-bytes")


# ---- the child's side -------------------------------------------------------------------------------------
def _child() -> None:
    """The child process (``python -m index.sqlbox``): a pickled job on stdin, a pickled ``(kind, payload)``
    on stdout."""
    import sys
    job = pickle.load(sys.stdin.buffer)
    lim: SQLLimits = job["limits"]
    try:
        answer = _answer(job, lim)
    except MemoryError:
        answer = ("memory", _memory_message(lim))
    try:
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        data = None
    if data is None or len(data) > job["answer_cap"] + (1 << 20):
        data = pickle.dumps(("bytes", _bytes_message(lim)))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _answer(job: dict, lim: SQLLimits) -> "tuple[str, object]":
    import duckdb
    import pyarrow as pa

    from .store import Store, StoreError, read_error
    from .where import WhereError, filter_clips
    end = time.monotonic() + job["deadline_s"]
    if job.get("endpoint"):
        os.environ["AWS_ENDPOINT_URL"] = job["endpoint"]
    store = Store(job["store"], warn=lambda msg: None)      # the caller has warned about damaged batches
    store._bad_shards.update(job.get("bad_shards") or {})   # ... and the ones it found unreadable
    try:
        con = store.connect(memory_limit=lim.memory_bytes, threads=lim.threads)
    except StoreError as e:
        return "error", str(e)
    timed_out = threading.Event()

    def interrupt():
        timed_out.set()
        con.interrupt()
    timer = threading.Timer(max(0.0, end - time.monotonic()), interrupt)
    timer.daemon = True
    timer.start()
    _cap_address_space(lim.memory_bytes)
    try:
        if job["kind"] == "where":
            try:
                return "ok", filter_clips(con, job["model_id"], job["condition"])
            except WhereError as e:
                return "where", str(e)
        return "ok", _select(con, job["sql"], job["format"], lim, timed_out)
    except duckdb.OutOfMemoryException:
        return "memory", _memory_message(lim)
    except duckdb.InterruptException:
        return "time", _time_message(lim)
    except _TooLarge:
        return "bytes", _bytes_message(lim)
    except _TimeUp:
        return "time", _time_message(lim)
    except duckdb.Error as e:
        if timed_out.is_set():
            return "time", _time_message(lim)
        if "bad alloc" in str(e).lower() or "out of memory" in str(e).lower():
            return "memory", _memory_message(lim)
        if read_error(e):                            # maybe a shard that does not decode: the caller checks
            return "damaged", error_text(e)
        return "error", f"query failed: {error_text(e)}\n({TABLES_HINT})"
    except pa.ArrowException as e:
        return "damaged", str(e)


class _TooLarge(Exception):
    pass


class _TimeUp(Exception):
    pass


def _select(con, sql: str, fmt: str, lim: SQLLimits, timed_out: threading.Event):
    """Run ``sql`` (read-only, already checked) and serialize its result within ``lim``."""
    statements = check_read_only(sql)
    for st in statements[:-1]:
        con.execute(st.query)
    rel = con.execute(statements[-1].query)
    columns = [d[0] for d in rel.description] if rel.description else []
    budget = lim.max_bytes
    wanted = lim.rows if lim.rows is not None else None
    parts: list = []
    size, n, truncated, batch = 0, 0, False, 16
    while columns:
        if timed_out.is_set():
            raise _TimeUp()
        take = batch if wanted is None else min(batch, wanted + 1 - n)
        chunk = rel.fetchmany(take)
        if not chunk:
            break
        if wanted is not None and n + len(chunk) > wanted:
            chunk, truncated = chunk[:wanted - n], True
        if fmt == "json":
            piece = ",".join(json.dumps([jsonable(v) for v in row], allow_nan=False, separators=(",", ":"))
                             for row in chunk).encode()
            size += len(piece) + 1
            if size > budget:
                raise _TooLarge()
            parts.append(piece)
        else:
            size += len(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
            if size > budget:
                raise _TooLarge()
            parts.extend(chunk)
        n += len(chunk)
        if truncated:
            break
        per_row = max(1, size // max(n, 1))          # rows per fetch: about 1/8 of what is left of the budget
        batch = max(1, min(2048, (budget - size) // (8 * per_row)))
    if fmt == "json":
        head = json.dumps({"columns": columns}, separators=(",", ":"))[:-1]
        row_limit = json.dumps(lim.rows)
        return (f'{head},"rows":['.encode() + b",".join(parts) +
                f'],"truncated":{json.dumps(truncated)},"row_limit":{row_limit}}}'.encode())
    return columns, parts, truncated


def _cap_address_space(memory_bytes: int) -> None:
    """Cap this process's address space at what it maps now plus ``memory_bytes`` (and a little slack)."""
    import resource
    try:
        with open("/proc/self/status") as f:
            now = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return                                       # not Linux: DuckDB's own memory_limit still applies
    cap = now + memory_bytes + SLACK_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


if __name__ == "__main__":
    _child()
