"""Ends the local Ray that a bike driver started, as soon as that driver is gone (even after ``kill -9``).

Run by :func:`jobs.raycluster.connect` as ``python -S reaper.py JSON`` in its own session (so a Ctrl-C or a
kill of the driver's process group does not stop it first). JSON holds the driver's pid and the
``(pid, start time)`` of every Ray process the driver started (GCS, raylet, ...). Every 0.2 s it checks that
its parent is still the driver; once the driver has exited, it collects those processes and all their
descendants (the ``ray::`` workers and actors hang below the raylet), checks each is still the same
process (start time from ``/proc``), and sends SIGKILL to all of them. Without it a killed driver leaves a
raylet and its workers (one holding the model: a GB or more) running for 30 s to 2 minutes.

Only the standard library is used, and nothing is imported from bike: it starts in a few milliseconds.
Linux only (``/proc``); elsewhere it exits at once.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time


def start_time(pid: int) -> "int | None":
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return int(data[data.rindex(")") + 2:].split()[19])


def children_map() -> "dict[int, list[int]]":
    kids: "dict[int, list[int]]" = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read().decode("ascii", "replace")
        except OSError:
            continue
        ppid = int(data[data.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(roots: "list[int]") -> "list[int]":
    """``roots`` and all their descendants."""
    kids = children_map()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def reap(procs: "list[tuple[int, int]]") -> int:
    """SIGKILL the still-running ``(pid, start time)`` processes and their descendants; returns how many."""
    alive = [pid for pid, st in procs if start_time(pid) == st]
    victims = [(pid, start_time(pid)) for pid in tree(alive)]
    n = 0
    for pid, st in victims:
        if st is not None and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except OSError:
                pass
    return n


def main(argv: "list[str]") -> int:
    if not os.path.isdir("/proc"):
        return 0
    spec = json.loads(argv[1])
    driver, procs = int(spec["driver"]), [tuple(p) for p in spec["procs"]]
    while os.getppid() == driver:
        time.sleep(float(spec.get("interval", 0.2)))
    time.sleep(float(spec.get("grace", 0.0)))        # a normal ray.shutdown() finishes first
    reap(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
