"""Checks on the tensors of an untrusted weights file, made before anything is built from them.

A ``.pt`` file stores each tensor as (storage, offset, shape, strides). ``weights_only`` loading only checks
that the shape fits inside the storage *through the strides*, so a 24 KB file can hold a stride-0 tensor
(``torch.zeros(1).expand(8192, 8192)``) that claims 64 million values: its shape then drives the size of the
model that is built (``engine.model.architecture``) and every copy of it (``.float()``) allocates the full size.

:func:`check_storage` walks everything a file holds (dicts, lists, tuples; each container once, so shared or
cyclic references cost nothing) and refuses, naming the tensor:

* a tensor that is not a dense CPU tensor (sparse, quantized, meta);
* a stride-0 dimension of size > 1, or strides that overlap (more values than stored bytes);
* a shape/offset reaching past the end of its storage;
* tensors that, together, claim more than twice the bytes the file really stores (views that all cover one
  storage; twice admits tied weights).

So the memory that loading can take is bounded by the file's own bytes. :func:`first_nonfinite` names the first
floating tensor holding NaN or inf (weights that would give NaN scores for every video).
"""
from __future__ import annotations

import torch

#: Tensors may claim at most this many times the bytes the file stores (tied weights share a storage).
SHARED_FACTOR = 2
#: Containers and tensors walked in one file, at most (a crafted pickle of millions of tiny lists).
MAX_NODES = 1_000_000


class UnsafeTensors(ValueError):
    """A tensor whose shape does not match the bytes stored for it; ``str(e)`` names it."""


def _name(prefix: str, key) -> str:
    k = key if isinstance(key, str) else repr(key) if isinstance(key, int) else f"<{type(key).__name__} key>"
    return f"{prefix}.{k[:120]}" if prefix else k[:120]


def _check(t: torch.Tensor, name: str) -> "tuple[int, int, int]":
    """(claimed bytes, storage key, storage bytes) of one tensor, or :class:`UnsafeTensors`."""
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        raise UnsafeTensors(f"tensor {name} is not a dense CPU tensor ({t.layout}, {t.device.type})")
    numel, size = t.numel(), t.element_size()
    storage = t.untyped_storage()
    stored = storage.nbytes()
    if numel == 0:
        return 0, 0, 0
    if any(st == 0 and n > 1 for n, st in zip(t.shape, t.stride())):
        raise UnsafeTensors(f"tensor {name} has a stride-0 dimension: shape {tuple(t.shape)} over "
                            f"{stored} stored bytes")
    reach = (t.storage_offset() + sum((n - 1) * st for n, st in zip(t.shape, t.stride())) + 1) * size
    if reach > stored or numel * size > stored:
        raise UnsafeTensors(f"tensor {name} declares shape {tuple(t.shape)} ({numel * size} bytes) but its "
                            f"storage holds {stored} bytes (overlapping strides or a truncated storage)")
    return numel * size, storage.data_ptr(), stored


def check_storage(obj) -> None:
    """Refuse (:class:`UnsafeTensors`) a loaded file whose tensors claim more than they store (module doc)."""
    seen: set = set()
    storages: dict = {}
    claimed = 0
    stack = [("", obj)]
    nodes = 0
    while stack:
        name, x = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise UnsafeTensors(f"more than {MAX_NODES} objects in the file")
        if isinstance(x, torch.Tensor):
            if id(x) in seen:
                continue
            seen.add(id(x))
            nbytes, key, stored = _check(x, name or "(top level)")
            claimed += nbytes
            if nbytes:
                storages[key] = max(storages.get(key, 0), stored)
        elif isinstance(x, (dict, list, tuple, set, frozenset)):
            if id(x) in seen:
                continue
            seen.add(id(x))
            items = x.items() if isinstance(x, dict) else enumerate(x)
            for k, v in items:
                stack.append((_name(name, k), v))
    stored = sum(storages.values())
    if claimed > SHARED_FACTOR * stored + (1 << 20):
        raise UnsafeTensors(f"its tensors claim {claimed} bytes but it stores {stored} (tensors that are views "
                            "of one storage)")


def first_nonfinite(state: dict, prefix: str = "") -> "str | None":
    """Name of the first floating tensor of ``state`` (a dict of tensors) holding NaN or ±inf, else None."""
    for key, t in state.items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()) and t.numel():
            if not bool(torch.isfinite(t).all()):
                return _name(prefix, key)
    return None
