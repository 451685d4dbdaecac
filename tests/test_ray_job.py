"""`ray job submit` of `bike tag` to a real Ray cluster on this machine: the README's "On a Ray cluster" command.

A head node with the dashboard's job server on a free loopback port, and a worker node, each started with
`ray start --block` in its own session on free ports; moto's S3 server (tests/test_remote.py's fixture) holds
the videos. Token authentication is on, with a token of the test's own for the nodes and the CLI. The test submits the
README's command, with the endpoint and test credentials in the job's runtime environment and the tiny
random-init model, and checks that the job SUCCEEDED and the store holds every video.
Everything started is stopped through its own process group (never `ray stop`, which stops every Ray session of
the host).
"""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_remote import BUCKET, CREDS, ROOT, s3  # noqa: F401 - the moto server fixture

RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_range(width: int = 40) -> int:
    """The first port of ``width`` consecutive free ones (worker ports of one node)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - width)
        try:
            socks = []
            for p in range(base, base + width):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def node_ports() -> list:
    """Every port a node listens on, chosen free (the defaults would meet other Ray sessions on this host)."""
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-grpc-port",
             "--dashboard-agent-listen-port", "--runtime-env-agent-port", "--metrics-export-port"]
    args = [x for name, port in zip(names, free_ports(len(names))) for x in (name, str(port))]
    base = free_range()
    return args + ["--min-worker-port", str(base), "--max-worker-port", str(base + 39)]


def start(args: list, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                             "--object-store-memory", str(150 << 20), *args, *node_ports()],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the node's process group (ray start, raylet, GCS, dashboard, workers), SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait(5)
                return
            time.sleep(0.5)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ray start ended ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:          # it answers (401: Ray's token authentication is on)
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"no job server at {url} after {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_ray_job_submit_of_bike_tag_tags_every_video(s3, tmp_path):  # noqa: F811
    temp = Path(tempfile.mkdtemp(prefix="bkray-", dir="/tmp"))          # short: Ray's socket paths
    gcs, dashboard, client = free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}
    # token authentication on (Ray's coming default), with this cluster's own token for the nodes and the CLI
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", PYTHONPATH=ROOT,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    head_log, worker_log = tmp_path / "head.log", tmp_path / "worker.log"
    head = start(["--head", "--port", str(gcs), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                  "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
                  "--temp-dir", str(temp), "--num-cpus", "1"], env, head_log)
    worker = None
    store = tmp_path / "store"
    try:
        wait_http(f"http://127.0.0.1:{dashboard}/api/version", head, head_log)
        worker = start(["--address", f"127.0.0.1:{gcs}", "--num-cpus", "1"], env, worker_log)
        runtime_env = {"env_vars": {"AWS_ENDPOINT_URL": s3["endpoint"], **CREDS, "PYTHONPATH": ROOT,
                                    "HF_HUB_OFFLINE": "1"}}
        # the README's command (+ the endpoint and credentials of the test server, + the tiny model)
        cmd = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}",
               "--runtime-env-json", json.dumps(runtime_env), "--",
               "bike", "tag", f"s3://{BUCKET}/videos/", "--store", str(store), "--address", "auto",
               "--model", "bike-tiny", "--random-init", "--lexicon", "hmdb51", "--labels", "dog,cat,surfing",
               "--no-progress", "--decoders", "2"]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        out = run.stdout + run.stderr
        assert run.returncode == 0 and "succeeded" in out.lower(), out[-4000:]
        job = next(w.strip("'") for line in out.splitlines() if "submitted successfully" in line
                   for w in line.split() if w.strip("'").startswith("raysubmit_"))
        status = subprocess.run([RAY, "job", "status", "--address", f"http://127.0.0.1:{dashboard}", job],
                                env=env, capture_output=True, text=True, timeout=60)
        assert f"Job '{job}' succeeded" in status.stdout + status.stderr, status.stdout + status.stderr
        assert "2 ok, 0 error" in out, out[-4000:]
        from index.store import ids
        from index.store import Store
        rows = Store(store).connect().execute("SELECT path, status, video_id FROM videos ORDER BY path").fetchall()
        assert rows == [(f"s3://{BUCKET}/videos/a.mp4", "ok", ids.video_id(str(s3["local"] / "a.mp4"))),
                        (f"s3://{BUCKET}/videos/sub/b.mkv", "ok", ids.video_id(str(s3["local"] / "b.mkv")))]
    finally:
        if worker is not None:
            stop(worker)
        stop(head)
        shutil.rmtree(temp, ignore_errors=True)
