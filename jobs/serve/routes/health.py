"""``GET /api/health`` (liveness, store, model_id, batches) and ``GET /api/stats`` (videos, clips, errors,
models, label histogram)."""
from __future__ import annotations

from fastapi import APIRouter

from jobs.serve.deps import ServiceDep
from jobs.serve.models import ERRORS, Health, Stats

router = APIRouter(prefix="/api", tags=["store"], responses=ERRORS)


@router.get("/health", responses={200: {"model": Health}})
def health(service: ServiceDep):
    return service.health()


@router.get("/stats", responses={200: {"model": Stats}})
def stats(service: ServiceDep):
    return service.stats()
