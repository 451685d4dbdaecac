"""A real uvicorn server for an ASGI app, in a thread of the test process, on a free loopback port.

    with serving(create_app(service)) as base:      # base: "http://127.0.0.1:PORT"
        httpx.get(base + "/api/health")
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app, timeout_s: float = 30.0):
    import uvicorn
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + timeout_s
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def start_bike_serve(store, *args, env: "dict | None" = None, timeout_s: float = 180.0, stdout=None):
    """``bike serve --store STORE --port P ARGS`` as a process of its own (the real command: uvicorn on a free
    loopback port), once ``/api/health`` answers → (process, base URL). ``env``: more environment variables.
    A loaded 2-core machine is slow to start: up to ``timeout_s``. Stop it with :func:`stop_bike_serve`."""
    import os
    import subprocess
    import sys

    import httpx
    port = free_port()
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "serve", "--store", str(store), "--port", str(port),
                             *map(str, args)], cwd=ROOT, env=full, stdout=stdout or subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"bike serve exited: {proc.stderr.read()[-3000:]}")
        if time.time() > deadline:
            stop_bike_serve(proc)
            raise AssertionError("bike serve did not start")
        time.sleep(0.3)


def stop_bike_serve(proc, timeout_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL past ``timeout_s``."""
    import subprocess
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def bike_serve(store, *args, **kwargs):
    """:func:`start_bike_serve` as a context: ``with bike_serve(store, "--token", T) as (proc, base): ...``."""
    proc, base = start_bike_serve(store, *args, **kwargs)
    try:
        yield proc, base
    finally:
        stop_bike_serve(proc)
