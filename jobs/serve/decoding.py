"""The one bounded pool that every decode of ``bike serve`` runs in (thumbnails, query-by-example uploads).

Decoding is the expensive, CPU-bound part of serving; the requests that ask for it must not take every
thread of the server (``/api/health`` and searches would stop answering) or pile up without bound. So:

- at most ``workers`` decodes run at once, in this pool's own threads (daemon threads: a decode still
  running never holds up the end of the process);
- at most ``queue`` more wait for a worker; a request beyond that is refused at once (:class:`Busy`, the
  app answers 503 with ``Retry-After``);
- a request waits at most its ``timeout_s`` (queue and decode together); past it the app answers 503 and
  the job is cancelled if it has not started (a started decode finishes under its own time budget, and a
  thumbnail it makes is cached for the next request);
- the same job asked for by several requests at once (``key``: one thumbnail wanted by every open page)
  is decoded once; they all wait on it.

Callers wait with :meth:`DecodePool.run` (async: no server thread is held while waiting) or
:meth:`DecodePool.call` (from a worker thread of the server).
"""
from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable


class Busy(Exception):
    """The pool is full or the request ran out of time; ``retry_after_s`` is a hint for the client."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DecodePool:
    def __init__(self, workers: int = 2, queue_size: int = 32, name: str = "bike-decode"):
        self.workers, self.queue_size = max(1, int(workers)), max(0, int(queue_size))
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0                                  # queued + running
        self._by_key: "dict[object, Future]" = {}
        self._closed = False
        for i in range(self.workers):
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True).start()

    # ---- submitting --------------------------------------------------------------------------------
    def submit(self, fn: Callable, *args, key=None) -> Future:
        """Queue ``fn(*args)`` -> its Future (the running one when ``key`` is already being decoded).
        :class:`Busy` when ``workers + queue_size`` jobs are already pending."""
        with self._lock:
            if key is not None and key in self._by_key:
                return self._by_key[key]
            if self._closed:
                raise Busy("the server is shutting down", 5)
            if self._pending >= self.workers + self.queue_size:
                raise Busy(f"busy: {self._pending} decodes pending (at most {self.workers} at once, "
                           f"{self.queue_size} waiting); try again shortly", 2)
            self._pending += 1
            fut: Future = Future()
            if key is not None:
                self._by_key[key] = fut
        self._jobs.put((fut, fn, args, key))
        return fut

    def call(self, fn: Callable, *args, timeout_s: float, key=None):
        """``fn(*args)`` run in the pool; the calling thread waits at most ``timeout_s`` (else :class:`Busy`)."""
        fut = self.submit(fn, *args, key=key)
        try:
            return fut.result(timeout=timeout_s)
        except (FutureTimeout, CancelledError):
            self._give_up(fut, key)
            raise self._late(timeout_s) from None

    async def run(self, fn: Callable, *args, timeout_s: float, key=None):
        """``fn(*args)`` run in the pool, awaited at most ``timeout_s`` (else :class:`Busy`)."""
        fut = self.submit(fn, *args, key=key)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout_s)
        except (asyncio.TimeoutError, CancelledError, asyncio.CancelledError) as e:
            if isinstance(e, asyncio.CancelledError) and not fut.cancelled():
                raise                                      # this request itself was cancelled (shutdown)
            self._give_up(fut, key)
            raise self._late(timeout_s) from None

    @staticmethod
    def _give_up(fut: Future, key) -> None:
        """A job nobody waits for any more is cancelled if it has not started; a keyed one is kept (other
        requests may wait on it, and its result is cached for the next one)."""
        if key is None:
            fut.cancel()

    def _late(self, timeout_s: float) -> Busy:
        return Busy(f"busy: decoding did not finish within {timeout_s:g} s; try again shortly",
                    max(1, int(round(timeout_s / 2))))

    @property
    def pending(self) -> int:
        return self._pending

    def close(self) -> None:
        """Refuse new jobs and cancel the queued ones (running decodes end under their own budgets)."""
        with self._lock:
            self._closed = True
        for _ in range(self.workers):
            self._jobs.put(None)

    # ---- the workers -------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._drain()
                return
            fut, fn, args, key = job
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        result = fn(*args)
                    except BaseException as e:  # noqa: BLE001 - handed to the waiting request
                        fut.set_exception(e)
                    else:
                        fut.set_result(result)
            finally:
                self._done(fut, key)

    def _done(self, fut: Future, key) -> None:
        with self._lock:
            self._pending -= 1
            if key is not None and self._by_key.get(key) is fut:
                del self._by_key[key]

    def _drain(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job[0].cancel()
                self._done(job[0], job[3])
