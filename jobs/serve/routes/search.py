"""``GET /api/search`` (a text query, a stored clip, relevance feedback) and ``POST /api/search`` (a video file
in the body, searched by example; at most ``Limits.max_upload_bytes``, decoded in the bounded pool)."""
from __future__ import annotations

import os
import tempfile
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from jobs.serve.deps import ServiceDep
from jobs.serve.limits import Limits
from jobs.serve.models import ERRORS, SearchAnswer
from jobs.serve.responses import error, json_response

router = APIRouter(prefix="/api", tags=["search"], responses=ERRORS)

#: ``k``: results per search, 1..Limits.max_k (the Service checks its own, possibly lower, bound again).
K = Annotated[int, Query(ge=1, le=Limits.max_k, description="results to return")]
#: ``min_score``: drop results scoring less; a finite number.
#: ``offset``: results (or videos, with group=video) to skip: the page's infinite scroll; offset + k ≤ max_results.
Offset = Annotated[int, Query(ge=0, le=Limits.max_results - 1, description="results to skip (paging)")]
#: ``group``: ``video`` gives one result per video with its other moments (``more``); ``clip`` (default) none.
Group = Annotated[Literal["video", "clip"] | None, Query(description="video: one result per video")]
MinScore = Annotated[float | None, Query(allow_inf_nan=False, description="drop results scoring less")]


@router.get("/search", responses={200: {"model": SearchAnswer}})
def search(service: ServiceDep, q: "str | None" = None, k: K = 10, where: "str | None" = None,
           clip: "str | None" = None, label: "str | None" = None, min_score: MinScore = None,
           channels: "str | None" = None, weights: "str | None" = None, dedup: bool = True,
           positive: "str | None" = None, negative: "str | None" = None, offset: Offset = 0,
           group: Group = None):
    return json_response(service.search(q=q, k=k, where=where or None, clip=clip or None,
                                        label=label or None, min_score=min_score, channels=channels or None,
                                        weights=weights or None, dedup=dedup, positive=positive or None,
                                        negative=negative or None, offset=offset, group=group))


@router.post("/search", responses={200: {"model": SearchAnswer}})
async def search_video(request: Request, service: ServiceDep, k: K = 10, where: "str | None" = None,
                       label: "str | None" = None, min_score: MinScore = None,
                       positive: "str | None" = None, negative: "str | None" = None, group: Group = None):
    limit = service.limits.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return error(413, f"upload too large ({int(declared)} bytes; at most {limit})")
    fd, path = tempfile.mkstemp(prefix="bike-serve-", suffix=".video")
    try:
        size = 0
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return error(413, f"upload too large (over {limit} bytes)")
                f.write(chunk)
        if not size:
            return error(400, "empty body: POST a video file to search by example")
        return json_response(await service.decoding.run(     # decoded in the bounded pool
            lambda: service.search(like=path, k=k, where=where or None, label=label or None,
                                   min_score=min_score, like_name=f"uploaded video ({size} bytes)",
                                   positive=positive or None, negative=negative or None, group=group),
            timeout_s=service.video_timeout_s + service.limits.thumb_timeout_s))
    finally:
        os.unlink(path)
