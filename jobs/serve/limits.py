"""Bounds on every input the server accepts; a request beyond one gets a 400/413 JSON error naming it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_query_chars: int = 1000          # text query (CLIP reads 77 tokens; longer text is cut by the tokenizer)
    max_where_chars: int = 2000          # --where condition and label filter
    max_k: int = 100                     # results per search
    max_upload_bytes: int = 50 << 20     # POST /api/search video (query by example)
    max_sql_chars: int = 10_000
    sql_rows: int = 1000                 # rows returned by /api/sql (more are cut, "truncated": true)
    sql_seconds: float = 5.0             # /api/sql is interrupted after this long
    thumb_width: int = 320               # thumbnails are scaled to this width
