"""index.store: the store on disk or object storage: Parquet tables (``schema``) written as atomic commits
(``core.Store``), its file systems and writer lease, ids, checks, compaction and the bounded SQL over it
(``sql``, ``sqlbox``, ``where``). The store's public names are re-exported here::

    from index.store import Store, StoreError

They are imported from ``index.store.core`` on first use (PEP 562), so ``import index.store.ids`` (a Ray decode
worker's content ids) does not pull in the store itself.
"""
from __future__ import annotations

import importlib

#: the names re-exported from index.store.core
__all__ = ["COMMITS", "QUARANTINE", "Store", "StoreError", "WriterLock", "atomic_write"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'index.store' has no attribute {name!r}")
    value = getattr(importlib.import_module("index.store.core"), name)
    globals()[name] = value                      # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
