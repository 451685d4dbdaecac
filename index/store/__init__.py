"""index.store: the store on disk or object storage: Parquet tables (``schema``) written as atomic commits
(``core.Store``), its file systems and writer lease, ids, checks, compaction and the bounded SQL over it
(``sql``, ``sqlbox``, ``where``). The store's public names are re-exported here::

    from index.store import Store, StoreError
"""
from index.store.core import COMMITS, QUARANTINE, Store, StoreError, WriterLock, atomic_write

__all__ = ["COMMITS", "QUARANTINE", "Store", "StoreError", "WriterLock", "atomic_write"]
