"""Ends the local Ray that a bike driver started, as soon as that driver is gone (even after ``kill -9``).

Run by :func:`jobs.tag.raycluster.connect` as ``python -S reaper.py JSON`` in its own session (so a Ctrl-C or a
kill of the driver's process group does not stop it first). JSON holds the driver's pid, its process group
and start time, and the ``(pid, start time)`` of every Ray process the driver started (GCS, raylet, ...).
Every 0.2 s it checks that its parent is still the driver, and every second it notes the descendants of those
processes (the raylet starts the dashboard and runtime-env agents and the ``ray::`` workers and actors).
Once the driver has exited it sends SIGKILL to every noted process still running (checked to be the same
process by its start time from ``/proc``) and to their descendants, and to every process named ``ray::...``
in the driver's process group started after the driver: the raylet dies with its parent (Ray sets that
up), and its agents, which keep the driver's process group, are then orphans that no tree leads to. Without
it a killed driver leaves the agents running for good and a raylet's workers (one holding the model: a GB
or more) for 30 s to 2 minutes.

Only the standard library is used, and nothing is imported from bike: it starts in a few milliseconds.
Linux only (``/proc``); elsewhere it exits at once.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time


def stat_fields(pid) -> "list[str] | None":
    """The fields of /proc/PID/stat after the command name (field 3, the state, first), or None when the
    process is gone. The name is skipped up to the last ``)``: it may hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def start_time(pid: int) -> "int | None":
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None when the process is gone."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def children_map() -> "dict[int, list[int]]":
    kids: "dict[int, list[int]]" = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := stat_fields(name)) is not None:
            kids.setdefault(int(fields[1]), []).append(int(name))
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


def descendants(procs: "dict[int, int]") -> "dict[int, int]":
    """pid → start time of the still-running processes of ``procs`` (pid → start time) and their descendants."""
    alive = [pid for pid, st in procs.items() if start_time(pid) == st]
    out = {}
    for pid in tree(alive):
        st = start_time(pid)
        if st is not None:
            out[pid] = st
    return out


def ray_processes_in_group(pgid: int, since: int) -> "list[int]":
    """Processes named ``ray::...`` (Ray's agents and workers rename themselves so) in process group ``pgid``
    that started at or after clock tick ``since`` (the driver's start)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = stat_fields(name)
            if fields is None or int(fields[2]) != pgid or int(fields[19]) < since:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if f.read(5) == b"ray::":
                    out.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def reap(procs: "list[tuple[int, int]]", pgid: "int | None" = None, since: "int | None" = None) -> int:
    """SIGKILL the still-running ``(pid, start time)`` processes and their descendants, and (with ``pgid``)
    the ``ray::`` processes of that process group started since ``since``; returns how many."""
    victims = list(descendants(dict(procs)).items())
    if pgid is not None and since is not None:
        victims += [(pid, start_time(pid)) for pid in ray_processes_in_group(pgid, since)]
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
    driver, known = int(spec["driver"]), {int(p): int(st) for p, st in spec["procs"]}
    interval, refresh, last = float(spec.get("interval", 0.2)), float(spec.get("refresh", 1.0)), 0.0
    while os.getppid() == driver:
        if time.monotonic() - last >= refresh:       # note the agents and workers the raylet has started
            known.update(descendants(known))
            last = time.monotonic()
        time.sleep(interval)
    time.sleep(float(spec.get("grace", 0.0)))        # a normal ray.shutdown() finishes first
    reap(list(known.items()), spec.get("pgid"), spec.get("since"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
