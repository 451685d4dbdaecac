"""A loopback TCP proxy in front of an S3 server for tests of object-storage reads (tests/test_remote.py).

It forwards every connection to the server and counts the bytes of the answers, so a test measures what
crossed the "network" independently of the code under test; it can also cut a connection once a number of
answer bytes went through (a connection lost mid-object) or stop forwarding answers (a stalled read).
"""
from __future__ import annotations

import socket
import threading


class Proxy:
    """``Proxy(host, port)``: listen on 127.0.0.1:<free port> (``endpoint``) and forward to host:port.

    ``answer_bytes``: bytes sent back to clients so far. ``cut_after``: close a connection once this many
    answer bytes went through it (``cuts`` connections, then forward normally; -1: every one).
    ``stall``: hold answers back (the client's read blocks) until ``stall`` is cleared or the proxy closes."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.answer_bytes = 0
        self.cut_after: "int | None" = None
        self.cuts = 0
        self.stall = False
        self._lock = threading.Lock()
        self._socks: list = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:                        # the server is gone (its test module ended): refuse this one
                client.close()
                continue
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src, dst, answer: bool) -> None:
        sent = 0                                   # answer bytes on this connection
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                if answer:
                    while self.stall:
                        threading.Event().wait(0.05)
                    with self._lock:
                        cut = self.cut_after is not None and self.cuts != 0 and sent + len(data) > self.cut_after
                        if cut:
                            data = data[:max(0, self.cut_after - sent)]
                            self.cuts -= 1
                        self.answer_bytes += len(data)
                        sent += len(data)
                    dst.sendall(data)
                    if cut:
                        raise ConnectionResetError("cut by the test proxy")
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.stall = False
        self._server.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
