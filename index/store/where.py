"""``--where``: restrict a search to the clips a DuckDB condition selects.

The condition is evaluated against the view ``search_clips``: ONE ROW PER (CLIP, LABEL) — each clip
appears once per top-k label — joining ``clips``, ``videos`` and ``labels`` of the searched model, plus
list columns of all labels and attributes of the clip. A clip qualifies when ANY of its rows satisfies the
condition, so ``label = 'surfing crowd'`` means "surfing crowd is among the clip's top-k labels", and
``rank = 0 AND label = 'surfing crowd'`` means "it is the clip's top label". Columns:

    clip_id, video_id, clip_index          which clip
    start_s, end_s, clip_s                 its span in the video and its length (s)
    path, size, duration_s, fps, width,    the video file (duration_s is the whole video's length)
    height, codec, tagged_at
    rank, label, score, video_score,       one of the clip's top-k labels (rank 0 = top label; score = fused
    attribute_score, peak_s                probability; peak_s = where that label's saliency peaks)
    top_label                              the clip's rank-0 label
    labels, attributes                     all its labels / attribute phrases, best first (lists: use
                                           list_contains(attributes, 'juggling'))
    subtitles, screen_text, speech         the video's transcripts (bike tag --text) of each source, all spans
                                           joined by ' ' (NULL when none): speech ILIKE '%budget%'

Examples: ``--where "label = 'surfing crowd' AND duration_s > 5"``,
``--where "path LIKE '%/2023/%'"``, ``--where "list_contains(attributes, 'dancing ballet')"``.

The condition is parsed by DuckDB as ONE expression (``duckdb.SQLExpression``), never pasted into a
statement: ``1=1) UNION SELECT ...`` is a syntax error, not a second query. Subqueries are refused (a
condition is about the clip's own columns), and it runs on the store's sandboxed connection
(``index.store.core.sandboxed_duckdb``), which can read no file but the store's shards.
"""
from __future__ import annotations

VIEW = "search_clips"

COLUMNS = ("clip_id", "video_id", "clip_index", "start_s", "end_s", "clip_s", "path", "size", "duration_s",
           "fps", "width", "height", "codec", "tagged_at", "rank", "label", "score", "video_score",
           "attribute_score", "peak_s", "top_label", "labels", "attributes", "subtitles", "screen_text", "speech")

_VIEW_SQL = f"""
CREATE OR REPLACE TEMP VIEW {VIEW} AS
WITH lab AS (SELECT clip_id, model_id, list(label ORDER BY rank) AS labels
             FROM labels GROUP BY clip_id, model_id),
     att AS (SELECT clip_id, model_id, list(attribute ORDER BY rank) AS attributes
             FROM attributes GROUP BY clip_id, model_id),
     txt AS (SELECT video_id,
                    string_agg(text, ' ' ORDER BY start_s) FILTER (WHERE source = 'subtitle') AS subtitles,
                    string_agg(text, ' ' ORDER BY start_s) FILTER (WHERE source = 'ocr') AS screen_text,
                    string_agg(text, ' ' ORDER BY start_s) FILTER (WHERE source = 'speech') AS speech
             FROM transcripts GROUP BY video_id)
SELECT c.clip_id, c.video_id, c.model_id, c.clip_index, c.start_s, c.end_s, c.end_s - c.start_s AS clip_s,
       v.path, v.size, v.duration_s, v.fps, v.width, v.height, v.codec, v.tagged_at,
       l.rank, l.label, l.score, l.video_score, l.attribute_score, l.peak_s,
       lab.labels[1] AS top_label, lab.labels, att.attributes, txt.subtitles, txt.screen_text, txt.speech
FROM clips c
LEFT JOIN videos v ON v.video_id = c.video_id AND v.model_id = c.model_id
LEFT JOIN labels l ON l.clip_id = c.clip_id AND l.model_id = c.model_id
LEFT JOIN lab ON lab.clip_id = c.clip_id AND lab.model_id = c.model_id
LEFT JOIN att ON att.clip_id = c.clip_id AND att.model_id = c.model_id
LEFT JOIN txt ON txt.video_id = c.video_id
"""


class WhereError(ValueError):
    """A --where condition DuckDB cannot evaluate; the message says why and lists the columns."""


def create_view(con) -> None:
    """Define ``search_clips`` on a connection from ``Store.connect()``."""
    con.execute(_VIEW_SQL)


def parse_condition(condition: str):
    """``condition`` → a ``duckdb.Expression``; :class:`WhereError` unless it is exactly one expression
    without subqueries."""
    import duckdb
    condition = (condition or "").strip()
    if not condition:
        raise WhereError("--where: empty condition")
    try:
        expr = duckdb.SQLExpression(condition)
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise WhereError(f"--where {condition!r}: one condition only (a single expression): {first}\n  {_HELP}") from None
    if _has_subquery(str(expr)):
        raise WhereError(f"--where {condition!r}: subqueries are not allowed; a condition is about the clip's "
                         f"own columns\n  {_HELP}")
    return expr


def _has_subquery(expression: str) -> bool:
    """Whether DuckDB's parse tree of ``expression`` (one expression, already checked) holds a subquery."""
    import json

    import duckdb
    con = duckdb.connect(":memory:")
    try:
        tree = con.execute("SELECT json_serialize_sql($q)", {"q": f"SELECT 1 WHERE {expression}"}).fetchone()[0]
    finally:
        con.close()

    def walk(node) -> bool:
        if isinstance(node, dict):
            if node.get("class") == "SUBQUERY" or node.get("type") in ("SUBQUERY", "TABLE_FUNCTION"):
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False
    parsed = json.loads(tree)
    return bool(parsed.get("error")) or walk(parsed.get("statements", []))


_HELP = (f"columns: {', '.join(COLUMNS)}\n  example: --where \"label = 'surfing crowd' AND duration_s > 5\" "
         "(strings in single quotes)")


def filter_clips(con, model_id: str, condition: str) -> "list[str]":
    """clip_ids of ``model_id`` for which some ``search_clips`` row satisfies ``condition`` (one expression,
    :func:`parse_condition`), evaluated with DuckDB's relational API — the text never becomes part of a
    statement."""
    import duckdb
    expr = parse_condition(condition)
    create_view(con)
    try:
        rel = (con.view(VIEW).filter(duckdb.ColumnExpression("model_id") == duckdb.ConstantExpression(model_id))
               .filter(expr).select(duckdb.ColumnExpression("clip_id")).distinct())
        rows = rel.fetchall()
    except (duckdb.OutOfMemoryException, duckdb.InterruptException):
        raise                                        # a bound, not a bad condition (index/store/sqlbox.py says which)
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise WhereError(f"--where {condition.strip()!r}: DuckDB cannot evaluate it: {first}\n  {_HELP}") from None
    return [r[0] for r in rows]
