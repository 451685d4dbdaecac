"""Run a command under a memory and time bound and measure its peak RSS truly.

A child forked straight from the pytest process reports pytest's RSS as its high-water mark (Linux keeps
``ru_maxrss`` across ``execve``), so a long test session inflates it. The command therefore runs under a small
launcher (a fresh interpreter, a few MB) that polls the command's RSS, kills it past ``max_rss`` or
``timeout``, and reports the ``ru_maxrss`` that ``wait4`` gives for it.

    rc, out, err, peak, seconds = run_bounded([sys.executable, "-m", "jobs.cli", ...], max_rss=1.5e9)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAUNCH = """\
import json, os, subprocess, sys, time
report, max_rss, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
p = subprocess.Popen(sys.argv[4:])
t0, killed = time.monotonic(), None
while True:
    pid, status, usage = os.wait4(p.pid, os.WNOHANG)
    if pid:
        break
    try:
        with open(f"/proc/{p.pid}/status") as f:
            rss = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:"))
    except (OSError, StopIteration):
        rss = 0
    if killed is None and (rss > max_rss or time.monotonic() - t0 > timeout):
        killed = "memory" if rss > max_rss else "time"
        p.kill()
    time.sleep(0.02)
json.dump({"rc": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss * 1024, "killed": killed},
          open(report, "w"))
"""


def run_bounded(argv, max_rss: float, timeout: float = 240.0, env: "dict | None" = None,
                cwd=ROOT) -> "tuple[int, str, str, int, float]":
    """``argv`` killed past ``max_rss`` bytes (polled every 20 ms) or ``timeout`` seconds → (exit status,
    stdout, stderr, peak RSS in bytes of the command alone, seconds)."""
    env = env or {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                  "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-c", LAUNCH, str(report), str(max_rss), str(timeout),
                            *map(str, argv)], cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=timeout + 60)
        got = json.loads(report.read_text())
    return got["rc"], r.stdout, r.stderr, got["maxrss"], time.monotonic() - t0
