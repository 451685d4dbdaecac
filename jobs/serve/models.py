"""Pydantic models of the API's JSON answers, so that ``GET /api/openapi.json`` describes what each route
returns. The routes still build their answers as plain dicts (service.py) and send them as they are: the models
document them (``responses=`` on the routes) and tests/test_serve.py checks real answers against them. Every
model allows fields beyond the ones named (``extra="allow"``): a newer server may add some."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorAnswer(_Answer):
    """Every error: one line for a person, and the HTTP status again."""
    error: str
    status: int


class Health(_Answer):
    ok: bool
    store: str
    model_id: "str | None"
    batches: int
    uptime_s: float


class LabelCount(_Answer):
    label: "str | None"
    clips: int


class Stats(_Answer):
    videos: int
    clips: int
    errors: int
    model_id: "str | None"
    model: str
    random_init: bool
    warning: "str | None"
    searchable: bool
    unsearchable: "str | None"
    models: "list[dict]"
    labels: "list[LabelCount]"
    error_report: "list[dict]"
    batches: int
    tables: "dict[str, list[list[str]]]" = {}     # the SQL views and their [column, type]


class ScoredLabel(_Answer):
    label: str
    score: float


class ScoredAttribute(_Answer):
    attribute: str
    score: float


class SearchHit(_Answer):
    """One result: the clip, its score, and the moment where the query matches (index/search/search.py)."""
    rank: int
    score: float
    clip_id: str
    video_id: str
    path: "str | None"
    start_s: float
    end_s: float
    moment_s: float
    moment_start_s: float
    moment_end_s: float
    saliency: "list[float]"
    frame_times: "list[float]"
    labels: "list[ScoredLabel]"
    attributes: "list[ScoredAttribute]"
    index_score: "float | None"
    joined: "dict | None" = None
    matched: "list[str]" = ["visual"]
    text: "str | None" = None
    query_score: "float | None" = None
    feedback_score: "float | None" = None
    more: "list[dict] | None" = None         # group=video: the video's other results, best first
    more_count: "int | None" = None          # group=video: how many (``more`` may list fewer)


class SearchAnswer(_Answer):
    """The objects of ``bike search --format json``, plus ``warning`` for random weights."""
    query: str
    kind: str
    model_id: str
    model: str
    random_init: bool
    notes: "list[str]"
    candidates: int
    seconds: float
    positives: "list[str]"
    negatives: "list[str]"
    results: "list[SearchHit]"
    warning: "str | None" = None
    page_notes: "list[str]" = []             # the notes in the page's words (no CLI options)
    offset: int = 0                          # results (or videos) skipped
    group: str = "clip"                      # clip, or video: one result per video
    has_more: bool = False                   # asking from offset + k may give more
    clips_found: int = 0                     # clips the search gave (before min_score)


class ClipLabelRow(_Answer):
    rank: int
    label: str
    score: float
    video_score: "float | None" = None
    peak_s: "float | None" = None
    saliency: "list[float] | None" = None


class ClipAnswer(_Answer):
    """A stored clip: span, frame times, labels (with saliency), attributes, and its video's path."""
    clip_id: str
    video_id: str
    clip_index: int
    start_s: float
    end_s: float
    frame_times: "list[float] | None"
    labels: "list[ClipLabelRow]"
    attributes: "list[dict]"
    path: "str | None"
    duration_s: "float | None"


class VideoClip(_Answer):
    clip_id: str
    clip_index: int
    start_s: float
    end_s: float
    labels: "list[str] | None"
    scores: "list[float] | None"


class VideoAnswer(_Answer):
    """A stored video and its clips with their top labels."""
    video_id: str
    path: "str | None"
    size: "int | None"
    duration_s: "float | None"
    fps: "float | None"
    width: "int | None"
    height: "int | None"
    codec: "str | None"
    num_clips: "int | None"
    status: str
    error: "str | None"
    tagged_at: "str | None"
    clips: "list[VideoClip]"


class SQLAnswer(_Answer):
    """Read-only SQL: the columns, the rows (at most ``row_limit``; ``truncated`` says more were cut)."""
    columns: "list[str]"
    rows: "list[list]"
    truncated: bool
    row_limit: int
    seconds: float


class LabelSaved(_Answer):
    """A tag saved from the page (``bike label``): how many clips were scored."""
    label: str
    model_id: "str | None"
    clips: int


#: The error answers every API route may give (documented on every route; the body is always ErrorAnswer).
ERRORS = {code: {"model": ErrorAnswer, "description": text} for code, text in (
    (400, "a bad request (a value out of bounds, SQL that is not allowed...)"),
    (401, "a token is required"), (403, "refused: cross-site, or a foreign Host header"),
    (404, "no such clip, video or route"), (408, "over a time limit"), (413, "over a size limit"),
    (503, "busy (Retry-After says when to try again)"))}
