"""Clips and videos: ``GET /api/clips/{video_id}/{n}`` (span, frame times, labels, attributes), its
``thumb.jpg?t=S`` (decoded on demand, cached; 503 when busy) and ``export.mp4?pad=S`` (the clip ± S s, stream
copy, cached); ``GET /api/videos/{video_id}`` (a video and its clips) and its ``media`` (the file, with Range)."""
from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from jobs.serve.deps import ServiceDep
from jobs.serve.limits import Limits
from jobs.serve.models import ERRORS, ClipAnswer, VideoAnswer
from jobs.serve.responses import OpenFileResponse

router = APIRouter(prefix="/api", tags=["media"], responses=ERRORS)

#: ``t``: the thumbnail's time (s), clamped into the clip; a finite number.
Time = Annotated[float | None, Query(allow_inf_nan=False, description="seconds (default: the clip's middle)")]
#: ``pad``: seconds of video on each side of an exported clip (the Service checks its own bound again).
Pad = Annotated[float, Query(ge=0, le=Limits.export_max_pad_s, allow_inf_nan=False,
                             description="seconds of video kept on each side of the clip")]


@router.get("/clips/{video_id}/{n}", responses={200: {"model": ClipAnswer}})
def clip(video_id: str, n: str, service: ServiceDep):
    return service.clip(f"{video_id}/{n}")


@router.get("/clips/{video_id}/{n}/thumb.jpg", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}}})
async def thumb(video_id: str, n: str, service: ServiceDep, t: Time = None):
    clip_id = f"{video_id}/{n}"
    hit, name, job = await run_in_threadpool(service.thumb_job, clip_id, t)
    path = hit or await service.decoding.run(job, timeout_s=service.limits.thumb_timeout_s, key=name)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})


@router.get("/clips/{video_id}/{n}/export.mp4", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}}})
async def export_clip(video_id: str, n: str, service: ServiceDep, pad: Pad = 0.0):
    clip_id = f"{video_id}/{n}"
    hit, name, job, download = await run_in_threadpool(service.export_job, clip_id, pad)
    path = hit or await service.decoding.run(job, timeout_s=service.limits.thumb_timeout_s, key=name)
    return FileResponse(path, media_type="video/mp4", filename=download)


@router.get("/videos/{video_id}", responses={200: {"model": VideoAnswer}})
def video(video_id: str, service: ServiceDep):
    return service.video(video_id)


@router.get("/videos/{video_id}/media", response_class=FileResponse,
            responses={200: {"content": {"video/*": {}}}, 206: {"description": "a byte range (Range header)"}})
def video_media(video_id: str, service: ServiceDep):
    opened = service.open_media(video_id)
    kind = mimetypes.guess_type(opened.real.name)[0] or "application/octet-stream"
    return OpenFileResponse(opened, media_type=kind if kind.startswith("video/") else "application/octet-stream")
