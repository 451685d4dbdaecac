"""Decode slots of ``bike tag``: CPU decodes and NVDEC decodes side by side. No Ray here.

The Ray runner (jobs/tag/rayrunner.py) keeps two pools of slots, one decode in flight per slot; each pool
runs its decode stage (jobs/tag/stages.py ``DECODE_STAGES``) with the resources that stage declares:

    cpu     ``Resources.decoders`` slots; a CPU backend (``--decoder pyav|ffmpeg``, or ``auto`` among the
            CPU backends); Ray request ``num_cpus=decode_cpus``
    nvdec   ``Resources.nvdec`` slots, one per NVDEC engine of the cluster; the nvdec backend, slot N on
            GPU N mod (the node's GPUs); Ray request ``{"NVDEC": 1}`` + ``nvdec_cpus``

``--decoder auto`` uses both and fills an NVDEC slot first when one is free; ``--decoder pyav|ffmpeg`` only
the CPU slots; ``--decoder nvdec`` only the NVDEC slots (a usage error when the cluster has none).
docs/decoding.md.
"""
from __future__ import annotations

from engine.video.base import AUTO_CPU

from jobs.errors import UsageError

CPU, NVDEC = "cpu", "nvdec"
#: Pools in the order a free slot is taken.
ORDER = (NVDEC, CPU)


def pool_sizes(decoder: "str | None", cpu: int, nvdec: int) -> "dict[str, int]":
    """Slots per pool for ``--decoder`` (None: auto) on a cluster with ``cpu`` CPU decode slots and ``nvdec``
    NVDEC engines."""
    decoder = decoder or "auto"
    if decoder == NVDEC:
        if nvdec < 1:
            raise UsageError("--decoder nvdec: the Ray cluster has no NVDEC resource (no GPU whose NVDEC engines "
                             "the nvdec backend can use was found; a cluster node declares its engines with "
                             "`ray start --resources='{\"NVDEC\": 7}'`; docs/decoding.md); use --decoder auto "
                             "or pyav")
        return {NVDEC: nvdec, CPU: 0}
    if decoder == "auto":
        return {NVDEC: max(0, nvdec), CPU: max(0, cpu)}
    return {NVDEC: 0, CPU: max(0, cpu)}


def slot_decoder(pool: str, slot: int, decoder: "str | None") -> str:
    """The decoder name a decode in ``slot`` of ``pool`` runs (engine.video.get_decoder resolves it on the
    worker, falling back to a CPU backend, said once, where the nvdec backend cannot run)."""
    if pool == NVDEC:
        return f"{NVDEC}:{slot}"
    return decoder if decoder not in (None, "auto", NVDEC) else AUTO_CPU


class DecodeSlots:
    """Free and busy slots of each pool; :meth:`take` prefers an NVDEC slot, then the lowest free number."""

    def __init__(self, sizes: "dict[str, int]"):
        self.sizes = {p: int(sizes.get(p, 0)) for p in ORDER}
        self._free = {p: list(range(self.sizes[p])) for p in ORDER}

    def take(self) -> "tuple[str, int] | None":
        """A free slot (pool, number), now busy; None when every slot is busy."""
        for p in ORDER:
            if self._free[p]:
                return p, self._free[p].pop(0)
        return None

    def give(self, pool: str, slot: int) -> None:
        """Slot ``slot`` of ``pool`` is free again."""
        if slot in self._free[pool] or not 0 <= slot < self.sizes[pool]:
            raise ValueError(f"slot {pool}:{slot} was not taken")
        self._free[pool].append(slot)
        self._free[pool].sort()

    def busy(self, pool: "str | None" = None) -> int:
        pools = ORDER if pool is None else (pool,)
        return sum(self.sizes[p] - len(self._free[p]) for p in pools)

    @property
    def total(self) -> int:
        return sum(self.sizes.values())
