"""Running a server for a benchmark: a free loopback port, waiting until ``/api/health`` answers, stopping it.

    >>> from serving import free_port, stop, wait_healthy      # bench/ is sys.path[0] when a bench script runs
"""
from __future__ import annotations

import socket
import subprocess
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


def stop(proc, timeout_s: float = 20.0) -> None:
    """SIGTERM the server, then SIGKILL it if it has not exited within ``timeout_s``; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
