"""The uvicorn server of ``bike serve``, with bounds on connections (``Limits``, defaults in limits.py).

uvicorn alone waits forever for a request that is never finished: a client that sends half a request line
(or half a body) and then nothing holds a connection, and a few hundred of them hold every file descriptor
("slowloris"). Here:

- **request head**: from the moment a connection opens (or its previous response ended), the request line
  and headers must have arrived within ``header_timeout_s``; otherwise the connection is closed. uvicorn has
  no such timeout: :class:`BoundedH11Protocol` adds it. The head may hold at most ``max_header_bytes``
  (h11's ``max_incomplete_event_size``; beyond: 400);
- **request body**: at most ``body_timeout_s`` between two pieces of it (then the connection is closed and
  the route sees a disconnect);
- **idle keep-alive** connections are closed after ``keep_alive_s`` (uvicorn's ``timeout_keep_alive``);
- **connections**: beyond ``max_connections`` open at once, a request is answered 503 at once
  (``limit_concurrency``);
- **shutdown**: on SIGTERM or SIGINT the server stops accepting, gives requests still running
  ``shutdown_s`` (``timeout_graceful_shutdown``), then cancels them; decodes still running are in daemon
  threads (decoding.py) and do not hold the process. Should that orderly shutdown still be going
  ``HARD_EXIT_S`` after the signal (a machine too loaded to schedule it), the process ends at once
  (:class:`BoundedServer`), so a signal always ends it within about 1.5 s.
"""
from __future__ import annotations

import asyncio
import os
import threading

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import Limits


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for the request head and an idle limit for the body."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0

    def connection_made(self, transport) -> None:
        self._deadline: "asyncio.TimerHandle | None" = None
        self._deadline_kind: "str | None" = None
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(body_data=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _watch(self, body_data: bool = False) -> None:
        """Arm the timer that fits the request's state: waiting for a head (a deadline, not moved by the
        bytes that trickle in), reading a body (moved by each piece), or neither."""
        if self.transport is None or self.transport.is_closing():
            return self._cancel()
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._deadline_kind != "head":
                self._arm("head", self.header_timeout_s)
        elif state is h11.SEND_BODY:
            if self._deadline_kind != "body" or body_data:
                self._arm("body", self.body_timeout_s)
        else:
            self._cancel()

    def _arm(self, kind: str, seconds: float) -> None:
        self._cancel()
        self._deadline_kind = kind
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _cancel(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
        self._deadline, self._deadline_kind = None, None

    def _expired(self) -> None:
        self._deadline, self._deadline_kind = None, None
        if self.transport.is_closing():
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):     # still waiting for the client
            self.logger.debug("closing a connection whose request did not arrive in time")
            self.transport.close()


def bounded_protocol(limits: Limits) -> type:
    """A :class:`BoundedH11Protocol` subclass with ``limits``' timeouts (uvicorn takes a class)."""
    return type("BikeH11Protocol", (BoundedH11Protocol,), {"header_timeout_s": float(limits.header_timeout_s),
                                                          "body_timeout_s": float(limits.body_timeout_s)})


#: Seconds after SIGTERM/SIGINT at which the process ends even if the orderly shutdown is not over.
HARD_EXIT_S = 1.5


class BoundedServer(uvicorn.Server):
    """``uvicorn.Server`` whose first SIGTERM/SIGINT also arms a deadline: ``os._exit`` after
    ``HARD_EXIT_S`` (the orderly shutdown normally ends it well before)."""

    def handle_exit(self, sig, frame) -> None:
        if not getattr(self, "_deadline_armed", False):
            self._deadline_armed = True
            timer = threading.Timer(HARD_EXIT_S, os._exit, (128 + int(sig),))
            timer.daemon = True
            timer.start()
        super().handle_exit(sig, frame)


def make_server(app, host: str, port: int, limits: Limits = Limits(), log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=log_level in ("debug", "info"),
        http=bounded_protocol(limits), ws="none",
        timeout_keep_alive=int(limits.keep_alive_s), h11_max_incomplete_event_size=int(limits.max_header_bytes),
        limit_concurrency=int(limits.max_connections),
        timeout_graceful_shutdown=max(0.1, float(limits.shutdown_s)))   # uvicorn types it int; a float works
    return BoundedServer(config)
