"""The writer lock of a store on object storage: a lease object, ``STORE/_lock.json``.

Object storage has no flock, so one writing job at a time is enforced with conditional requests on one object
(index/storefs.py), docs/storage.md "The store on object storage":

* **Take**: create ``_lock.json`` (holder host, pid, start, expiry, a random token) with ``If-None-Match: *``.
  When it exists, the holder is read: a lease whose expiry has passed, or one held by a process of *this* host
  that no longer exists, is taken over with ``If-Match: <its ETag>`` (of two jobs taking over the same stale
  lease, one wins); any other holder makes the job stop at once with one line naming the holder and when its
  lease expires.
* **Renew**: a background thread replaces the object with a later expiry every ``ttl/3`` seconds,
  ``If-Match`` on the ETag it last wrote. A renewal that finds the object changed (another job took it over)
  marks the lease lost.
* **Check**: before each commit the writer calls :meth:`Lease.check`: it raises when the lease was lost or has
  less than ``ttl/3`` seconds left (a writer that was paused longer than its lease must not commit over a
  newer writer). The remaining risk is clock skew between hosts larger than that margin.
* **Release**: delete the object ``If-Match`` our last ETag (never someone else's lease).

``BIKE_LEASE_S`` sets the lease length (default 60 s): the longest a killed writer on another host keeps the
store locked.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

KEY = "_lock.json"
TTL_S = 60.0


def ttl_s() -> float:
    try:
        return max(3.0, float(os.environ.get("BIKE_LEASE_S", TTL_S)))
    except ValueError:
        return TTL_S


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def describe(holder: dict, now: "float | None" = None) -> str:
    """'pid 123 on host h, since …; its lease expires at … (in 42 s)' for the error line."""
    now = time.time() if now is None else now
    exp = float(holder.get("expires", 0))
    left = exp - now
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since "
            f"{_when(float(holder.get('started', 0)))}; its lease expires at {_when(exp)} "
            + (f"(in {left:.0f} s)" if left >= 0 else f"({-left:.0f} s ago)"))


class Lease:
    """``with Lease(fs, error=StoreError): ...`` holds the store's writer lease (see the module docstring).
    ``error`` is the exception class raised with the one-line message."""

    def __init__(self, fs, error=RuntimeError, ttl: "float | None" = None):
        self.fs, self.error = fs, error
        self.ttl = ttl_s() if ttl is None else ttl
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.token = uuid.uuid4().hex
        self.tag: "str | None" = None
        self.expires = 0.0
        self.lost: "str | None" = None
        self.took_over: "dict | None" = None            # the stale holder this lease replaced
        self._stop = threading.Event()
        self._thread: "threading.Thread | None" = None
        self._lock = threading.Lock()

    def _body(self) -> "tuple[bytes, float]":
        """(the lease object's bytes, the expiry they state): the expiry counts only once the write succeeded."""
        expires = time.time() + self.ttl
        return json.dumps({"host": self.host, "pid": self.pid, "started": self.started, "expires": expires,
                           "token": self.token, "ttl_s": self.ttl}).encode(), expires

    def stale(self, holder: dict, now: float) -> "str | None":
        """Why ``holder``'s lease may be taken over (expired; a dead process of this host), or None."""
        if float(holder.get("expires", 0)) < now:
            return "expired"
        if holder.get("host") == self.host and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
            return f"pid {holder['pid']} is no longer running on this host"
        return None

    def acquire(self) -> "Lease":
        self.started = time.time()
        where = self.fs.url(KEY)
        for _ in range(5):
            body, expires = self._body()
            tag = self.fs.create(KEY, body)
            if tag is not None:
                self.tag, self.expires = tag, expires
                break
            got = self.fs.read_tagged(KEY)
            if got is None:
                continue                                  # released meanwhile: try to create again
            data, their_tag = got
            try:
                holder = json.loads(data)
                if not isinstance(holder, dict):
                    raise ValueError
            except ValueError:
                holder = {"expires": 0, "host": "?", "pid": "?", "started": 0}     # unreadable: treat as expired
            why = self.stale(holder, time.time())
            if why is None:
                raise self.error(f"{self.fs.root}: another job ({describe(holder)}) is writing to this store; "
                                 f"wait for it to finish, or use another --store (lease object {where})")
            body, expires = self._body()
            tag = self.fs.replace(KEY, body, their_tag)
            if tag is not None:
                self.tag, self.expires, self.took_over = tag, expires, {**holder, "why": why}
                break
        else:
            raise self.error(f"{self.fs.root}: could not take the writer lease {where} (other jobs keep taking it)")
        self._thread = threading.Thread(target=self._renew_loop, name="bike-lease", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.renew()

    def renew(self) -> None:
        with self._lock:
            if self.lost or self.tag is None:
                return
            body, expires = self._body()
            try:
                tag = self.fs.replace(KEY, body, self.tag)
            except Exception as e:  # noqa: BLE001 - a failed renewal is retried next round; check() decides
                tag, transient = None, e
            else:
                transient = None
            if tag is not None:
                self.tag, self.expires = tag, expires
            elif transient is None:
                self.lost = "another job took the lease over (it had expired)"

    def check(self) -> None:
        """Raise when this job may no longer write: its lease was lost or is about to expire."""
        if self.lost:
            raise self.error(f"{self.fs.root}: this job lost the writer lease: {self.lost}; nothing more is "
                             "committed (rerun the same command)")
        left = self.expires - time.time()
        if left < self.ttl / 3:
            self.renew()
            left = self.expires - time.time()
            if self.lost or left < self.ttl / 3:
                raise self.error(f"{self.fs.root}: the writer lease could not be renewed ({left:.0f} s left); "
                                 "nothing more is committed (rerun the same command)")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            if self.tag is not None and not self.lost:
                try:
                    self.fs.delete(KEY, self.tag)
                except Exception:  # noqa: BLE001 - it expires by itself
                    pass
            self.tag = None

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
