"""Bounds on every input the server accepts; a request beyond one gets a 400/408/413 JSON error naming it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_query_chars: int = 1000          # text query (CLIP reads 77 tokens; longer text is cut by the tokenizer)
    max_where_chars: int = 2000          # --where condition and label filter
    max_k: int = 100                     # results per search
    max_feedback_chars: int = 10_000     # positive= / negative= clip id lists (index/feedback.py caps the count)
    max_upload_bytes: int = 50 << 20     # POST /api/search video (query by example)
    max_sql_chars: int = 10_000
    sql_rows: int = 1000                 # rows returned by /api/sql (more are cut, "truncated": true)
    sql_seconds: float = 5.0             # /api/sql and a search's `where`: whole run, result included (408)
    sql_memory_bytes: int = 512 << 20    # memory of one /api/sql query or `where` (413)
    sql_max_bytes: int = 16 << 20        # JSON body of one /api/sql answer (413)
    sql_workers: int = 4                 # SQL queries (and `where` filters) running at once; more wait, then 503
    thumb_width: int = 320               # thumbnails are scaled to this width

    def sql(self):
        """The bounds of index/sqlbox.py for /api/sql and `where` (``SQLLimits``)."""
        from index.sqlbox import SQLLimits
        return SQLLimits(memory_bytes=self.sql_memory_bytes, seconds=self.sql_seconds,
                         max_bytes=self.sql_max_bytes, workers=self.sql_workers, rows=self.sql_rows)
