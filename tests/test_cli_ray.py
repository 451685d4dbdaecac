"""Ray started by bike: no process outlives a killed driver for long (jobs/tag/reaper.py), logs stay quiet."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.tag import reaper

ROOT = Path(__file__).resolve().parents[1]

DRIVER = r"""
import json, os, time
import ray
from jobs.tag import raycluster
raycluster.connect(num_cpus=1)

@ray.remote(num_cpus=0.25)
class Holder:
    def pid(self):
        return os.getpid()

h = Holder.remote()
worker = ray.get(h.pid.remote())
node = ray._private.worker._global_node
print(json.dumps([p.pid for _, p in node.live_processes()] + [worker]), flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may never reap the killed processes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2] != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the watchdog reads /proc (Linux)")
def test_killed_driver_leaves_no_ray_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    drv = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env, cwd=tmp_path)
    try:
        line = drv.stdout.readline()
        assert line, drv.stderr.read()[-2000:]
        pids = json.loads(line)
        assert len(pids) >= 3 and all(_running(p) for p in pids)        # GCS, raylet, ..., the actor
    finally:
        drv.send_signal(signal.SIGKILL)
        drv.wait()
    t0 = time.monotonic()
    while any(_running(p) for p in pids) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    left = [p for p in pids if _running(p)]
    gone_after = time.monotonic() - t0
    for p in left:                                    # do not leave them behind for the other tests
        os.kill(p, signal.SIGKILL)
    assert not left, f"still running {gone_after:.1f} s after the driver was killed: {left}"
    assert gone_after < 5


def test_reaper_kills_a_tree_and_spares_reused_pids():
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                              "print('up', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        grand = reaper.tree([child.pid])
        assert len(grand) == 2
        st = reaper.start_time(child.pid)
        assert reaper.reap([(child.pid, st + 1)]) == 0                 # another process with that pid: spared
        assert _running(child.pid)
        assert reaper.reap([(child.pid, st)]) == 2                      # the process and its child
        child.wait(5)
        t0 = time.monotonic()
        while _running(grand[1]) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert not _running(grand[1])
    finally:
        if child.poll() is None:
            child.kill()
