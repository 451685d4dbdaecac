"""index.store: the store on disk or object storage: Parquet tables (``schema``) written as atomic commits
(``core.Store``), its file systems and writer lease, ids, checks, compaction and the bounded SQL over it
(``sql``, ``sqlbox``, ``where``). The store's public names are re-exported here::

    from index.store import Store, StoreError

They are imported from ``index.store.core`` on first use (PEP 562), so ``import index.store.ids`` (a Ray decode
worker's content ids) does not pull in the store itself.
"""
from __future__ import annotations

from engine.lazy import lazy_exports

#: the names re-exported from index.store.core
__all__ = ["COMMITS", "QUARANTINE", "Store", "StoreError", "WriterLock", "atomic_write"]


__getattr__, __dir__ = lazy_exports(__name__, {name: "core" for name in __all__})
