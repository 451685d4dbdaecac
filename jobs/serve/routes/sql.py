"""``GET /api/sql?q=SELECT...``: read-only SQL over the store, row-, memory- and time-limited (sqlrun.py)."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from jobs.serve.deps import ServiceDep
from jobs.serve.models import ERRORS, SQLAnswer

router = APIRouter(prefix="/api", tags=["sql"], responses=ERRORS)


@router.get("/sql", responses={200: {"model": SQLAnswer}})
def sql(service: ServiceDep, q: str = ""):
    return Response(service.sql_json(q), media_type="application/json")     # bounded JSON, passed as is
