"""Decode slots of ``bike tag``: one pool per registered decode stage, side by side. No Ray here.

Each pool is declared by its decode stage class (jobs/tag/stages.py ``DECODE_STAGES``; e.g. ``DecodeStage``
and ``NvdecDecodeStage``): nothing here names a pool. The Ray runner (jobs/tag/rayrunner.py) keeps one decode
in flight per slot, each pool running its stage with the resources that stage declares:

    the CPU pool (a stage with no custom resource)
            ``Resources.decoders`` slots; a CPU backend (``--decoder pyav|ffmpeg``, or ``auto`` among the
            CPU backends); Ray request ``num_cpus=decode_cpus``
    a pool with a custom resource (``nvdec``: ``{"NVDEC": 1}``)
            one slot per unit of that resource in the cluster (jobs/tag/raycluster.py); slot N runs the
            stage's ``slot_decoder(N, ...)`` (``nvdec:N``: GPU N mod the node's GPUs)

``--decoder auto`` uses every pool and fills a free slot of the highest ``preference`` first (NVDEC before
CPU); a CPU backend (``--decoder pyav|ffmpeg``) only the CPU slots; a pool's own backend (``--decoder nvdec``)
only that pool's slots (a usage error when the cluster has none). docs/decoding.md.
"""
from __future__ import annotations

from jobs.errors import UsageError

from .stages import DECODE_STAGES


def pool_order() -> "tuple[str, ...]":
    """The registered pools in the order a free slot is taken (highest preference first)."""
    return tuple(sorted(DECODE_STAGES, key=lambda p: -DECODE_STAGES[p].preference))


def cpu_pool() -> str:
    """The pool of CPU decodes: the registered decode stage that declares no custom resource."""
    return next(p for p in pool_order() if DECODE_STAGES[p].slot_resource() is None)


def pool_sizes(decoder: "str | None", slots: "dict[str, int]") -> "dict[str, int]":
    """Slots per pool for ``--decoder`` (None: auto) on a cluster that offers ``slots`` (pool → slots:
    ``Resources.slots()``), every registered pool a key."""
    decoder = decoder or "auto"
    offered = {p: max(0, int(slots.get(p, 0))) for p in pool_order()}
    own = [p for p in offered if DECODE_STAGES[p].slot_resource() and DECODE_STAGES[p].backend == decoder]
    if own:                                  # --decoder nvdec: that pool only
        if offered[own[0]] < 1:
            raise UsageError(DECODE_STAGES[own[0]].missing())
        return {p: n if p == own[0] else 0 for p, n in offered.items()}
    if decoder == "auto":
        return offered
    return {p: n if p == cpu_pool() else 0 for p, n in offered.items()}    # a CPU backend: the CPU slots


def slot_decoder(pool: str, slot: int, decoder: "str | None") -> str:
    """The decoder name a decode in ``slot`` of ``pool`` runs (engine.video.get_decoder resolves it on the
    worker, falling back to a CPU backend, said once, where e.g. the nvdec backend cannot run)."""
    return DECODE_STAGES[pool].slot_decoder(slot, decoder)


def held_pool(held) -> str:
    """The pool whose resource a decode task held (``End.held``: ((name, amount), ...)); else the CPU pool."""
    names = dict(held)
    for p in pool_order():
        r = DECODE_STAGES[p].slot_resource()
        if r is not None and names.get(r):
            return p
    return cpu_pool()


class DecodeSlots:
    """Free and busy slots of each pool; :meth:`take` prefers the pool of highest preference, then the lowest
    free number."""

    def __init__(self, sizes: "dict[str, int]"):
        order = pool_order()
        self.order = order + tuple(p for p in sizes if p not in order)      # every registered pool, 0 or more
        self.sizes = {p: int(sizes.get(p, 0)) for p in self.order}
        self._free = {p: list(range(self.sizes[p])) for p in self.order}

    def take(self) -> "tuple[str, int] | None":
        """A free slot (pool, number), now busy; None when every slot is busy."""
        for p in self.order:
            if self._free[p]:
                return p, self._free[p].pop(0)
        return None

    def give(self, pool: str, slot: int) -> None:
        """Slot ``slot`` of ``pool`` is free again."""
        if pool not in self._free or slot in self._free[pool] or not 0 <= slot < self.sizes[pool]:
            raise ValueError(f"slot {pool}:{slot} was not taken")
        self._free[pool].append(slot)
        self._free[pool].sort()

    def busy(self, pool: "str | None" = None) -> int:
        pools = self.order if pool is None else (pool,)
        return sum(self.sizes[p] - len(self._free[p]) for p in pools)

    @property
    def total(self) -> int:
        return sum(self.sizes.values())
