"""On-disk cache of text features for label sets and lexicons.

Encoding 400 class prompts and 400 lexicon phrases with a ViT-B text tower takes about a minute on a 2-core
CPU; the result depends only on the weights and the texts, so it is kept in ``~/.cache/bike/text`` (or
``$BIKE_CACHE_DIR``; set it to an empty string to disable the cache) as float32, exactly what was computed
(at the model's precision, which is part of the key).
Only lists of at least :data:`MIN_TEXTS` texts are cached (label sets, lexicons), not single queries.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .config import cache_root

MIN_TEXTS = 16


def cache_dir() -> "Path | None":
    root = cache_root()
    return root / "text" if root is not None else None


def cache_key(weights_id: str, model_name: str, texts, precision: str = "fp32") -> str:
    """Key of a text list's features: weights, model, texts, and the precision they were computed at
    (fp32 keys are those of caches written before precisions existed)."""
    tag = f"{model_name}\0{weights_id}\0" + ("" if precision == "fp32" else f"{precision}\0")
    h = hashlib.sha256(tag.encode())
    h.update("\n".join(texts).encode())
    return h.hexdigest()[:32]


def load(key: str):
    """``(cls, tokens)`` from the cache, or None (missing or unreadable entries are ignored)."""
    d = cache_dir()
    path = d / f"{key}.pt" if d else None
    if path is None or not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        return entry["cls"], entry["tokens"]
    except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never fatal
        return None


def save(key: str, cls: torch.Tensor, tokens: torch.Tensor) -> None:
    """Store an entry (temp file + rename, so readers never see half of it); errors are ignored."""
    d = cache_dir()
    if d is None:
        return
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.{os.getpid()}.tmp"
        torch.save({"cls": cls.cpu(), "tokens": tokens.cpu()}, tmp)
        os.replace(tmp, d / f"{key}.pt")
    except OSError:
        pass
