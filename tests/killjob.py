"""SIGKILL a running `bike` job at a chosen moment, with every process it started (its local Ray included)."""
import glob
import os
import signal
import subprocess
import time


def processes_in_session(sid: int) -> "list[int]":
    """Pids of every process in session ``sid`` (a job started with ``start_new_session=True``)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:                    # field 6 of /proc/PID/stat: session id
            out.append(int(stat.split("/")[2]))
    return out


def sigkill_when(cmd: list, ready, cwd: str, env: dict, timeout_s: float = 300, poll_s: float = 0.05) -> None:
    """Start ``cmd`` in its own session, wait until ``ready()`` is true (e.g. two batches committed), then
    SIGKILL the whole session. Fails the test when the job ends before it could be killed."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                break
            time.sleep(poll_s)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        for pid in processes_in_session(proc.pid):   # anything of the job still alive (its Ray)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
