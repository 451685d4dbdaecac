"""How many NVDEC engines this host's GPUs have: the size of the ``NVDEC`` Ray resource (docs/decoding.md).

One NVDEC engine decodes one stream at a time at full speed; several decodes on one engine share it. So
``bike`` counts engines, not GPUs: a decode task on the nvdec backend asks Ray for one ``NVDEC`` unit.

``ENGINES_PER_GPU`` is the number of NVDEC engines per GPU by GPU name, as NVIDIA's datasheets and
architecture whitepapers give them (and the Video Codec SDK's "GPU support matrix"). It is written from those
documents, not measured here: a GPU missing from the table counts 1 engine, and ``$BIKE_NVDEC_ENGINES``
(engines per GPU, ``0``: declare none) overrides the table on this host.
"""
from __future__ import annotations

import re
import shutil
import subprocess

#: ``$BIKE_NVDEC_ENGINES``: NVDEC engines per GPU on this host, overriding the table (0: declare none).
ENV = "BIKE_NVDEC_ENGINES"
#: Engines of a GPU the table does not know.
UNKNOWN_GPU = 1

#: (pattern matched in the GPU's name, case-insensitive, first match wins) -> NVDEC engines per GPU.
ENGINES_PER_GPU: "list[tuple[str, int]]" = [
    (r"\bH(100|200|800|20)\b|GH200", 7),   # Hopper GH100: 7 NVDEC (+ 7 NVJPG)
    (r"\bB(100|200)\b|GB200", 7),          # Blackwell datacenter: 7 NVDEC
    (r"\bA(100|800)\b", 5),                # GA100: 5 NVDEC
    (r"\bA30\b", 4),
    (r"\bL4\b", 4),
    (r"\bL40S?\b", 3),
    (r"\bA10G?\b|\bA40\b", 2),             # GA102 datacenter parts: 2 NVDEC
    (r"\bT4\b", 2),
    (r"\bV100\b", 1),
]


def engines_per_gpu(name: str) -> int:
    """NVDEC engines of one GPU called ``name`` (``nvidia-smi``'s name), from the table."""
    for pattern, n in ENGINES_PER_GPU:
        if re.search(pattern, name, re.IGNORECASE):
            return n
    return UNKNOWN_GPU


def count(gpu_names: "list[str]", env: "dict | None" = None) -> int:
    """NVDEC engines of all ``gpu_names`` together; ``$BIKE_NVDEC_ENGINES`` (per GPU) wins over the table.
    A bad override (not a whole number ≥ 0) is a ``ValueError`` naming the variable."""
    from engine.settings import Settings
    raw = Settings.from_env(env).nvdec_engines or ""
    if raw:
        if not raw.isdigit():
            raise ValueError(f"${ENV}={raw!r}: give the number of NVDEC engines per GPU (a whole number, 0: none)")
        return int(raw) * len(gpu_names)
    return sum(engines_per_gpu(n) for n in gpu_names)


def gpu_names(timeout_s: float = 10.0) -> "list[str]":
    """The names of this host's NVIDIA GPUs (``nvidia-smi --query-gpu=name``); [] when it cannot say."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]
