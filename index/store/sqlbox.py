"""User SQL under hard bounds: memory, time and result size, in warm child processes of its own.

Every piece of SQL that someone else wrote (``bike sql``, ``GET /api/sql``, a ``--where`` condition in
``bike search`` and ``bike serve``) runs here. DuckDB's own settings are not enough on their own: its
``memory_limit`` governs the buffer manager, but a scalar function such as ``list_sum(range(150000000))``
or ``repeat('x', 20000000)`` allocates outside it, and ``interrupt()`` is only looked at between chunks of
rows, so one such expression grew a process by 10 GB and ran 75 s past a 5 s limit. So queries run in child
processes, ``python -m index.store.sqlbox`` (a fresh interpreter, never a fork of the caller, which may have
threads), kept warm in a pool: each child imports DuckDB and pyarrow once, then serves one job at a time,
a length-prefixed pickled job on its stdin and a pickled ``(kind, payload, retire)`` answer on its stdout.
Starting one costs ~0.25 s idle and seconds on a loaded machine; a :class:`Sandbox` made with ``warm=True``
(the server: ``Service.warm``) starts its children ahead of time, so a query finds one ready.

* **memory**: before each query the child caps its address space (``RLIMIT_AS``, soft limit) at what it
  maps at that moment plus :attr:`SQLLimits.memory_bytes` plus :data:`SLACK_BYTES`, and lifts the cap
  after answering (only this module's code runs between queries: user SQL cannot touch the limit). DuckDB
  gets the same ``memory_limit``, ``threads`` and no spilling (set before ``lock_configuration``,
  ``index.store.core.sandboxed_duckdb``). An allocation past the cap fails inside the child, which reports it;
  the caller's process never holds the query's memory. A child is retired (ended, and replaced) after a
  query that hit any bound, after :data:`MAX_QUERIES` queries, or once its resident size grew
  :data:`RSS_GROWTH_BYTES` past what it held after its first query, so a long-lived child never carries
  more than that into the next query's budget.
* **time**: :attr:`SQLLimits.seconds` covers the query, fetching and serializing the result (it starts
  when the job is handed to a ready child, not at the child's start). The child interrupts DuckDB at the
  deadline (``interrupt()`` from a timer thread); the caller kills the child shortly after if it has not
  answered (a function DuckDB cannot interrupt) and a replacement starts in the background. Waiting for a
  child that is still starting is bounded separately (:data:`START_TIMEOUT_S`, then 503 busy).
* **result size**: the child serializes the result (JSON for the server, pickled rows for the CLI) and
  stops as soon as it passes :attr:`SQLLimits.max_bytes`; the caller reads at most that much.
* **concurrency**: a :class:`Sandbox` runs at most :attr:`SQLLimits.workers` children at once; a query
  that finds no free slot within its time limit is refused as busy. Memory in use by SQL is therefore at
  most ``workers × (base + memory_bytes + slack)``; idle children hold their base (~100 MB each).
* **freshness**: a child opens the store once and reuses the connection while the store's commit records
  (and derived tables) are unchanged: the caller sends :func:`store_signature` (one listing of
  ``_commits/`` and ``_dedup/``; names, sizes and times, or ETags on object storage) with every job, and the
  child re-reads the records and reconnects when it differs, so the next query sees a new commit. Each
  query runs on a cursor of its own (no session state carries over from one query to the next).
* **the parent's end**: a child exits when its stdin reaches EOF (the parent closed it or died) and, while
  busy, when its parent process is gone (checked every 0.2 s). ``PR_SET_PDEATHSIG`` is not used: it fires
  when the *thread* that started the child ends, and replacements are started from short-lived threads.

Errors are :class:`SQLLimitError` (``kind``: ``time``, ``memory``, ``bytes`` or ``busy``; ``status``: the
HTTP status the server answers with) or the usual :class:`index.store.sql.SQLError` /
:class:`index.store.where.WhereError` for a query that is refused or fails.

    >>> box = Sandbox(SQLLimits(memory_bytes=256 << 20, seconds=5), warm=True)
    >>> columns, rows, truncated = box.rows(store, "SELECT label, count(*) FROM labels GROUP BY 1")
    >>> box.close()
"""
from __future__ import annotations

import datetime
import decimal
import json
import math
import os
import pickle
import struct
import threading
import time
import uuid
import weakref
from dataclasses import dataclass

from .sql import TABLES_HINT, SQLError, check_read_only, error_text

#: Address space a child may map beyond its size after opening the store, on top of ``memory_bytes``: the
#: allocators reserve address space ahead of use (a 40 MB result failed under 64 MB of slack), and Python
#: holds the result being serialized.
SLACK_BYTES = 256 << 20
#: How long after the deadline the caller waits for the child's own answer before killing it.
GRACE_S = 0.5
#: How long a query waits for a child that is still starting (its interpreter and imports) before 503.
START_TIMEOUT_S = 60.0
#: A child is retired after this many queries ...
MAX_QUERIES = 200
#: ... or once its resident size grew this much past what it held after its first query.
RSS_GROWTH_BYTES = 128 << 20


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
def store_signature(store):
    """What changes when a batch is committed, a record is rewritten or a derived table (``index.store.schema.DERIVED``:
    ``_dedup/``, ``_user_labels/``) is written: one listing of each folder (names with size and time, or ETags on
    object storage). A child reopens the store when the signature it gets differs from the one it opened the
    store at; None (the listing failed) always reopens."""
    from .schema import DERIVED
    from .core import COMMITS
    folders = (COMMITS, *sorted({folder for folder, _ in DERIVED.values()}))
    try:
        return tuple(tuple(sorted(store.fs.list_tags(folder).items())) for folder in folders)
    except Exception:  # noqa: BLE001 - unreadable for a moment: the child opens the store afresh
        return None


#: What a child writes as soon as it has read a job: a death before it is a dead child (the job goes to another),
#: a death after it is the job's (a bound the child could not report).
TAKEN = b"\x01"


class _Child:
    """One warm child process (caller's side): its pipes and how many queries it answered."""

    def __init__(self, proc):
        self.proc = proc
        self.queries = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def ask(self, job: dict, kill_at: float, lim: SQLLimits) -> "tuple[str, object, bool]":
        """Hand ``job`` to the child; (kind, payload, retire) of its answer or of its death. Kind ``dead``:
        the child was gone before it could take the job (the caller tries another)."""
        import selectors
        try:
            _write_frame(self.proc.stdin, job)
        except (BrokenPipeError, OSError):
            return "dead", None, True
        cap = job["answer_cap"] + (1 << 20)              # the answer's size: the result plus its framing
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        want = len(TAKEN) + _HEADER.size                  # first the child's "taken" byte, then the answer
        head = len(TAKEN) + _HEADER.size
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while len(buf) < want:
                left = kill_at - time.monotonic()
                if left <= 0:
                    return "time", _time_message(lim), True
                if not sel.select(left):
                    continue
                chunk = os.read(fd, min(1 << 20, want - len(buf)))
                if not chunk and not buf:                # died before it took the job (killed while idle)
                    return "dead", None, True
                if not chunk:                            # EOF: the child died (a bound it could not report)
                    self.proc.wait(2.0)
                    rc = self.proc.returncode
                    sig = -rc if rc is not None and rc < 0 else None
                    return "memory", _memory_message(lim, " (the query process died"
                                                          f"{f' of signal {sig}' if sig else ''})"), True
                buf += chunk
                if want == head and len(buf) == want:
                    n = _HEADER.unpack(bytes(buf[len(TAKEN):]))[0]
                    if n > cap:
                        return "bytes", _bytes_message(lim), True
                    want += n
        try:
            kind, payload, retire = pickle.loads(bytes(buf[head:]))
        except Exception:  # noqa: BLE001 - a garbled answer: treat the child as broken
            return "memory", _memory_message(lim, " (the query process died)"), True
        return kind, payload, retire


class Sandbox:
    """Runs user SQL against a store in bounded, warm child processes (see the module docstring); one per
    service or command (it holds the slots that cap how many run at once, and the children). Thread-safe.

    ``warm=True`` starts :attr:`SQLLimits.workers` children now and replaces a retired one in the background
    (the server); ``warm=False`` starts one when a query finds none idle and keeps it for the next query
    (a command that runs one or two queries). ``max_queries``: a child is retired after this many."""

    def __init__(self, limits: SQLLimits = SQLLimits(), warm: bool = False, max_queries: "int | None" = None):
        self.limits = limits
        self.max_queries = max(1, max_queries or MAX_QUERIES)
        self._workers = max(1, limits.workers)
        self._slots = threading.BoundedSemaphore(self._workers)
        self._cond = threading.Condition()
        self._idle: "list[_Child]" = []
        self._all: "set[_Child]" = set()             # every child alive or starting, for close()
        self._count = 0                              # children alive or starting (at most workers)
        self._closed = False
        self._warm = False
        self.started = 0                             # children started so far (tests, benchmarks)
        self._finalizer = weakref.finalize(self, _kill_all, self._all)
        if warm:
            self.start()

    # ---- the pool ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start children up to :attr:`SQLLimits.workers` in the background, and from now on replace each
        retired one at once."""
        with self._cond:
            if self._closed:
                return
            self._warm = True
            n = self._workers - self._count
            self._count += n
        for _ in range(n):
            threading.Thread(target=self._spawn_in_background, name="sqlbox-start", daemon=True).start()

    def ready(self, n: "int | None" = None, timeout: float = START_TIMEOUT_S) -> bool:
        """Wait until ``n`` children (default: workers) are idle and ready; whether they are."""
        n = self._workers if n is None else n
        end = time.monotonic() + timeout
        with self._cond:
            while self._prune_locked() < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def pids(self) -> "list[int]":
        """The process ids of the children now alive (idle or busy)."""
        with self._cond:
            return sorted(c.proc.pid for c in self._all if c.alive())

    def close(self) -> None:
        """End every child (idle ones at once; a busy one when its query returns). Idempotent."""
        with self._cond:
            self._closed = True
            self._warm = False
            self._idle.clear()
            self._cond.notify_all()
        _kill_all(self._all)

    def _spawn(self) -> _Child:
        child = _Child(_start_child(self.max_queries))
        with self._cond:
            self._all.add(child)
            self.started += 1
        try:
            _wait_ready(child.proc, START_TIMEOUT_S)
        except BaseException:
            child.kill()
            with self._cond:
                self._all.discard(child)
            raise
        return child

    def _spawn_in_background(self) -> None:
        try:
            child = self._spawn()
        except Exception:  # noqa: BLE001 - a query that needs a child starts one itself and reports why not
            with self._cond:
                self._count -= 1
                self._cond.notify_all()
            return
        with self._cond:
            if not self._closed:
                self._idle.append(child)
                self._cond.notify_all()
                return
            self._count -= 1
        child.kill()

    def _take(self) -> _Child:
        """An idle child, or one started here when fewer than workers exist; waits for one that is starting."""
        end = time.monotonic() + START_TIMEOUT_S
        with self._cond:
            while True:
                if self._closed:
                    raise SQLError("the SQL sandbox is closed")
                self._prune_locked()
                if self._idle:
                    return self._idle.pop()
                if self._count < self._workers:
                    self._count += 1
                    break
                left = end - time.monotonic()
                if left <= 0:
                    raise SQLLimitError("busy", f"busy: no query process was ready within {START_TIMEOUT_S:g} "
                                                "s; try again in a moment")
                self._cond.wait(left)
        try:
            return self._spawn()
        except BaseException as e:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()
            if isinstance(e, SQLError):
                raise
            raise SQLError(f"cannot start a query process: {e}") from None

    def _prune_locked(self) -> int:
        """(with the lock held) Retire idle children that died (killed while idle: the OOM killer, an
        operator), which starts their replacements in a warm pool; how many idle ones are left."""
        for child in [c for c in self._idle if not c.alive()]:
            self._idle.remove(child)
            self._retire_locked(child)
        return len(self._idle)

    def _retire_locked(self, child: _Child) -> None:
        """(with the lock held) Drop ``child`` and, in a warm pool, start its replacement now."""
        self._all.discard(child)
        threading.Thread(target=child.kill, daemon=True).start()
        if self._warm and not self._closed:
            threading.Thread(target=self._spawn_in_background, name="sqlbox-start", daemon=True).start()
        else:
            self._count -= 1
        self._cond.notify_all()

    def _give_back(self, child: _Child, retire: bool) -> None:
        with self._cond:
            if retire or self._closed or child.queries >= self.max_queries or not child.alive():
                self._retire_locked(child)
            else:
                self._idle.append(child)
                self._cond.notify_all()

    # ---- queries -----------------------------------------------------------------------------------------
    def json(self, store, sql: str) -> bytes:
        """The JSON body of ``GET /api/sql``: ``{"columns", "rows", "truncated", "row_limit", "seconds"}``."""
        check_read_only(sql)                         # refused before a child sees it
        return self._run(store, {"kind": "sql", "sql": sql, "format": "json"})

    def rows(self, store, sql: str) -> "tuple[list[str], list[tuple], bool]":
        """(column names, rows, truncated) of ``sql`` (the last statement's result)."""
        check_read_only(sql)
        return self._run(store, {"kind": "sql", "sql": sql, "format": "rows"})

    def where(self, store, model_id: str, condition: str) -> "list[str]":
        """``index.store.where.filter_clips`` under the bounds: the clip ids the condition keeps."""
        return self._run(store, {"kind": "where", "model_id": model_id, "condition": condition})

    def _run(self, store, job: dict):
        lim = self.limits
        if not self._slots.acquire(timeout=lim.seconds):
            raise SQLLimitError("busy", f"busy: {lim.workers} queries are running; try again in a moment")
        try:
            store.commits()                          # damaged batches are warned about here, once, by the caller
            cap = lim.max_bytes if job["kind"] == "sql" else lim.memory_bytes   # clip ids: as many as the store has
            for damaged in range(3):
                job = {**job, "store": str(store.root), "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
                       "limits": lim, "answer_cap": cap, "signature": store_signature(store),
                       "bad_shards": dict(getattr(store, "_bad_shards", {}))}
                for attempt in range(3):             # a child found dead before it took the job: another one
                    child = self._take()
                    t0 = time.monotonic()
                    kind, payload, retire = child.ask({**job, "deadline_s": lim.seconds},
                                                      t0 + lim.seconds + GRACE_S, lim)
                    seconds = time.monotonic() - t0
                    child.queries += 1
                    self._give_back(child, retire)
                    if kind != "dead":
                        break
                else:
                    raise SQLError("query processes keep dying before they take a query")
                if kind != "damaged":
                    break
                # A shard that does not decode although its size is right: the caller's store finds it (full
                # check, one warning naming the batch, left out from now on) and the query runs again without it.
                if damaged == 2 or not store.find_unreadable():
                    kind, payload = "error", f"query failed: {payload}\n({TABLES_HINT})"
                    break
        finally:
            self._slots.release()
        if kind == "ok":
            if job.get("format") == "json":      # the body with the seconds spliced in (query and result)
                return payload[:-1] + f',"seconds":{round(seconds, 4)}}}'.encode()
            return payload
        if kind in SQLLimitError.STATUS:
            raise SQLLimitError(kind, payload)
        if kind == "where":
            from .where import WhereError
            raise WhereError(payload)
        raise SQLError(payload)


def _kill_all(children: "set[_Child]") -> None:
    for child in list(children):
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    children.clear()


#: A job or an answer on the pipes: its length (8 bytes, big-endian), then the pickle.
_HEADER = struct.Struct(">Q")


def _write_frame(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(_HEADER.pack(len(data)) + data)
    f.flush()


def _read_frame(f):
    """The next object on ``f``; None at EOF."""
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    n = _HEADER.unpack(head)[0]
    data = f.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)


def _start_child(max_queries: int):
    """A child process, ``python -m index.store.sqlbox`` (a fresh interpreter, never a fork of this possibly
    multi-threaded process), not yet ready."""
    import subprocess
    import sys
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # where `index` is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, "-m", "index.store.sqlbox", str(max_queries)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)


def _wait_ready(proc, timeout: float) -> None:
    """Wait for the child's ready message (its imports done); RuntimeError when it died or took too long."""
    import selectors
    end = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"it did not start within {timeout:g} s")
            if sel.select(left):
                break
    msg = _read_frame(proc.stdout)
    if not (isinstance(msg, tuple) and msg and msg[0] == "ready"):
        raise RuntimeError(f"it exited at start (status {proc.poll()})")


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
def _child(max_queries: int) -> None:
    """The child process (``python -m index.store.sqlbox [MAX_QUERIES]``): imports what a query needs, says it is
    ready, then answers one framed job after another until stdin ends or it retires itself."""
    import sys
    _watch_parent()
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    sys.stdout = sys.stderr                          # a stray print must not corrupt the answers
    import duckdb  # noqa: F401 - imported now, before the first query
    import pyarrow  # noqa: F401
    import pyarrow.dataset  # noqa: F401

    from index.store import core as store, where  # noqa: F401
    _write_frame(out, ("ready", os.getpid()))
    state: dict = {}
    base_rss = None
    for n in range(1, max_queries + 1):
        job = _read_frame(inp)
        if job is None:
            return
        out.write(TAKEN)                             # the caller now knows a death from here on is this job's
        out.flush()
        lim: SQLLimits = job["limits"]
        try:
            try:
                answer = _answer(job, lim, state)    # caps the address space for the query and its answer
            except MemoryError:
                answer = ("memory", _memory_message(lim))
            rss = _status_kb("VmRSS:") * 1024
            base_rss = rss if base_rss is None else base_rss
            retire = answer[0] in SQLLimitError.STATUS or n >= max_queries or rss - base_rss > RSS_GROWTH_BYTES
            try:
                data = pickle.dumps((*answer, retire), protocol=pickle.HIGHEST_PROTOCOL)
            except MemoryError:
                data = None
            if data is None or len(data) > job["answer_cap"] + (1 << 20):
                retire = True
                data = pickle.dumps(("bytes", _bytes_message(lim), True))
            out.write(_HEADER.pack(len(data)))
            out.write(data)                          # apart: no copy of a large answer
            out.flush()
        finally:
            _uncap_address_space()
        if retire:
            return


def _connection(job: dict, lim: SQLLimits, state: dict):
    """The store's connection, opened once and reused while the store's signature, root and limits are the
    ones it was opened with (``state`` keeps it between jobs)."""
    from .core import Store
    bad = job.get("bad_shards") or {}                # shards the caller found unreadable: left out here too
    key = (job["store"], job.get("endpoint"), lim.memory_bytes, lim.threads, tuple(sorted(bad)))
    sig = job.get("signature")
    if state.get("con") is not None and state.get("key") == key and sig is not None and state.get("sig") == sig:
        return state["con"]
    if state.get("con") is not None:
        state.pop("con").close()
    if state.get("key") is not None and state["key"][:2] == key[:2]:
        state["store"].commits(refresh=True)         # same store: re-read its records
    else:
        state["store"] = Store(job["store"], warn=lambda msg: None)   # the caller warns about damaged batches
    if bad:
        state["store"]._bad_shards.update(bad)
        state["store"].commits(refresh=True)
    state["con"] = state["store"].connect(memory_limit=lim.memory_bytes, threads=lim.threads)
    state["key"], state["sig"] = key, sig
    return state["con"]


def _answer(job: dict, lim: SQLLimits, state: dict) -> "tuple[str, object]":
    import duckdb
    import pyarrow as pa

    from .core import StoreError, cursor, read_error
    from .where import WhereError, filter_clips
    end = time.monotonic() + job["deadline_s"]
    if job.get("endpoint"):
        os.environ["AWS_ENDPOINT_URL"] = job["endpoint"]
    try:
        con = cursor(_connection(job, lim, state))   # a cursor per query: no session state carries over
    except StoreError as e:
        state.pop("key", None)
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
            state.pop("key", None)                   # and the next job reopens the store
            return "damaged", error_text(e)
        return "error", f"query failed: {error_text(e)}\n({TABLES_HINT})"
    except pa.ArrowException as e:
        state.pop("key", None)
        return "damaged", str(e)
    finally:
        timer.cancel()                               # never interrupts a later query
        try:
            con.close()
        except Exception:  # noqa: BLE001 - an interrupted cursor may refuse; it is dropped anyway
            pass


def _watch_parent() -> None:
    """End this process as soon as its parent is gone, even while a query runs (a daemon thread)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(0)
    threading.Thread(target=watch, name="sqlbox-parent", daemon=True).start()


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


def _status_kb(field: str) -> int:
    """A field of /proc/self/status in KB (0 where there is none: not Linux)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field))
    except (OSError, StopIteration, ValueError):
        return 0


def _cap_address_space(memory_bytes: int) -> None:
    """Cap this process's address space (soft limit) at what it maps now plus ``memory_bytes`` and
    :data:`SLACK_BYTES`; :func:`_uncap_address_space` lifts it after the query."""
    import resource
    now = _status_kb("VmSize:") * 1024
    if not now:
        return                                       # not Linux: DuckDB's own memory_limit still applies
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    cap = now + memory_bytes + SLACK_BYTES
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _uncap_address_space() -> None:
    import resource
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


if __name__ == "__main__":
    import sys
    _child(int(sys.argv[1]) if len(sys.argv) > 1 else MAX_QUERIES)
