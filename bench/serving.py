"""Starting a server for a benchmark: a free loopback port, and waiting until ``/api/health`` answers.

    >>> from serving import free_port, wait_healthy      # bench/ is sys.path[0] when a bench script runs
"""
from __future__ import annotations

import socket
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc, base: str, poll_s: float = 0.2) -> None:
    """Until ``base/api/health`` answers 200; the server's stderr as the error when it exits first."""
    import httpx
    while True:
        try:
            if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(proc.stderr.read())
        time.sleep(poll_s)
