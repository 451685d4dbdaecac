"""What every benchmark records about the machine it ran on (bench/results/*.json → "machine").

    >>> from machine import machine          # bench/ is on sys.path when a bench script runs
    >>> machine(torch=torch.__version__, note="shared machine")
"""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str:
    """The first GPU torch sees, or "none" (torch is only asked when it is already imported)."""
    import sys
    torch = sys.modules.get("torch")
    try:
        return torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else "none"
    except Exception:  # noqa: BLE001 - a broken CUDA install is "none" here
        return "none"


def machine(**extra) -> dict:
    """CPU model, cores, memory, GPU, Python, platform, UTC time and load average at the start, plus ``extra``
    (library versions, a note on shared load). The load average says whether other work ran beside it."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1), "gpu": gpu_name(),
            "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], **extra}
