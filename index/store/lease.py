"""The writer lock of a store on object storage: a lease object, ``STORE/_lock.json``.

Object storage has no flock, so one writing job at a time is enforced with conditional requests on one object
(index/store/storefs.py), docs/storage.md "The store on object storage":

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
* **Malformed** lease objects (not JSON, a field of the wrong type, ``"expires": null``; checked by
  index/store/validate.py) never cause a traceback: one whose expiry is valid is honoured as it stands (expired or
  not, dead pid or not); one with no valid expiry counts as expired, since no bike job wrote it and none renews
  it, and the job that takes it over says so in one warning line.
* **Lost**: a writer whose renewal fails reads the object back; when another job's lease is there (or none at
  all), it stops at its next check with one line naming that job and saying that nothing it had not committed
  was committed.

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

from index.store import validate

KEY = "_lock.json"
TTL_S = 60.0


def ttl_s() -> float:
    try:
        from engine.settings import Settings
        return max(3.0, Settings.from_env().lease_s)
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
    """'pid 123 on host h, since …; its lease expires at … (in 42 s)' for the error line (``holder``: the
    well-formed fields of :func:`index.store.validate.lease_holder`; missing ones show as '?')."""
    now = time.time() if now is None else now
    started = f"{_when(holder['started'])}" if "started" in holder else "?"
    out = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since {started}"
    if "expires" not in holder:
        return out + "; its lease states no expiry"
    exp = holder["expires"]
    left = exp - now
    return out + (f"; its lease expires at {_when(exp)} "
                  + (f"(in {left:.0f} s)" if left >= 0 else f"({-left:.0f} s ago)"))


class Lease:
    """``with Lease(fs, error=StoreError): ...`` holds the store's writer lease (see the module docstring).
    ``error`` is the exception class raised with the one-line message."""

    def __init__(self, fs, error=RuntimeError, ttl: "float | None" = None, warn=None):
        self.fs, self.error = fs, error
        self.warn = warn or (lambda msg: None)
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

    def stale(self, holder: dict, now: float, malformed: "str | None" = None) -> "str | None":
        """Why ``holder``'s lease may be taken over (expired; a dead process of this host), or None. A malformed
        lease object (``malformed``: why, from :func:`index.store.validate.lease_holder`) counts as expired when it
        states no valid expiry: no bike job wrote it, so none renews it."""
        if "expires" not in holder:
            return f"expired (the lease object is malformed: {malformed or 'no expiry'})"
        if holder["expires"] < now:
            return "expired"
        if holder.get("host") == self.host and "pid" in holder and not _alive(holder["pid"]):
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
            got = self.fs.read_tagged(KEY, limit=validate.MAX_LEASE_BYTES)
            if got is None:
                continue                                  # released meanwhile: try to create again
            data, their_tag = got
            holder, malformed = validate.lease_holder(data)
            why = self.stale(holder, time.time(), malformed)
            if why is None:
                raise self.error(f"{self.fs.root}: another job ({describe(holder)}) is writing to this store; "
                                 f"wait for it to finish, or use another --store (lease object {where})"
                                 + (f"; its lease object is malformed ({malformed})" if malformed else ""))
            body, expires = self._body()
            tag = self.fs.replace(KEY, body, their_tag)
            if tag is not None:
                self.tag, self.expires, self.took_over = tag, expires, {**holder, "why": why}
                if malformed:
                    self.warn(f"{where}: the writer lease object was malformed ({malformed}); taken over: {why}")
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
            except Exception:  # noqa: BLE001 - a failed renewal is retried next round; check() decides
                tag = None
            if tag is not None:
                self.tag, self.expires = tag, expires
                return
            self.lost = self._who_took_it()

    def _who_took_it(self) -> "str | None":
        """After a renewal failed: why the lease is lost (another job's lease object now, or none at all), or
        None when the object is still ours (a transient failure: retried next round)."""
        try:
            got = self.fs.read_tagged(KEY, limit=validate.MAX_LEASE_BYTES)
        except Exception:  # noqa: BLE001 - cannot tell: transient
            return None
        if got is None:
            return "its lease object is gone (another job took the lease over after it had expired, and finished)"
        data, tag = got
        if tag == self.tag:
            return None
        holder, malformed = validate.lease_holder(data)
        if holder.get("token") == self.token:
            return None
        return (f"another job ({describe(holder)}) took the lease over after it had expired"
                + (f"; that lease object is malformed ({malformed})" if malformed else ""))

    def check(self, what: str = "what this job had not committed yet") -> None:
        """Raise when this job may no longer write: its lease was lost or is about to expire. ``what``: the work
        in progress, which the message says was not committed."""
        if self.lost:
            raise self.error(f"{self.fs.root}: this job lost the writer lease: {self.lost}; it stops here, and "
                             f"nothing of {what} was committed (rerun the same command)")
        left = self.expires - time.time()
        if left < self.ttl / 3:
            self.renew()
            left = self.expires - time.time()
            if self.lost:
                self.check(what)
            if left < self.ttl / 3:
                raise self.error(f"{self.fs.root}: the writer lease could not be renewed ({left:.0f} s left); it "
                                 f"stops here, and nothing of {what} was committed (rerun the same command)")

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
