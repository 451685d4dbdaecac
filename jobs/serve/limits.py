"""Bounds on every input the server accepts; a request beyond one gets a 400/408/413 JSON error naming it (503
with ``Retry-After`` when the decoders are busy). The connection bounds are applied by ``server.py``."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_query_chars: int = 1000          # text query (CLIP reads 77 tokens; longer text is cut by the tokenizer)
    max_where_chars: int = 2000          # --where condition and label filter
    max_k: int = 100                     # results per search (one page of the page's infinite scroll)
    max_results: int = 1000              # offset + k: how deep paging goes (each page re-runs the search)
    group_min_clips: int = 200           # group=video: the best clips grouped, at least (more for deep pages)
    max_group_moments: int = 50          # group=video: at most this many other moments listed per video
    max_feedback_chars: int = 10_000     # positive= / negative= clip id lists (index/search/feedback.py caps the count)
    max_upload_bytes: int = 50 << 20     # POST /api/search video (query by example)
    max_sql_chars: int = 10_000
    sql_rows: int = 1000                 # rows returned by /api/sql (more are cut, "truncated": true)
    sql_seconds: float = 5.0             # /api/sql and a search's `where`: whole run, result included (408)
    sql_memory_bytes: int = 512 << 20    # memory of one /api/sql query or `where` (413)
    sql_max_bytes: int = 16 << 20        # JSON body of one /api/sql answer (413)
    sql_workers: int = 4                 # SQL queries (and `where` filters) running at once; more wait, then 503
    thumb_width: int = 320               # thumbnails are scaled to this width
    # decoding (decoding.py): thumbnails and query-by-example uploads share one pool
    decode_workers: int = 2              # decodes at once
    decode_queue: int = 32               # more may wait; beyond: 503 at once
    thumb_timeout_s: float = 10.0        # a thumbnail not ready by then: 503 + Retry-After (its decode budget too)
    thumb_cache_bytes: int = 256 << 20   # thumbnail JPEGs kept on disk per store (least recently used go first)
    export_max_pad_s: float = 30.0       # "Save clip": at most this much video on each side of the clip
    export_max_bytes: int = 256 << 20    # an exported clip larger than this is refused (413)
    export_cache_bytes: int = 1 << 30    # exported clips kept on disk per store (least recently used go first)
    # connections (server.py)
    header_timeout_s: float = 10.0       # a request head (line + headers) must arrive within this
    body_timeout_s: float = 30.0         # at most this long between two pieces of a request body
    keep_alive_s: int = 5                # an idle keep-alive connection is closed after this
    max_header_bytes: int = 16 << 10     # request line + headers (h11); beyond: 400
    max_connections: int = 512           # open connections; beyond, requests get 503 at once
    shutdown_s: float = 0.5              # on SIGTERM/SIGINT, requests still running get this long

    def sql(self):
        """The bounds of index/store/sqlbox.py for /api/sql and `where` (``SQLLimits``)."""
        from index.store.sqlbox import SQLLimits
        return SQLLimits(memory_bytes=self.sql_memory_bytes, seconds=self.sql_seconds,
                         max_bytes=self.sql_max_bytes, workers=self.sql_workers, rows=self.sql_rows)
