"""Any other ``/api/…`` path: a JSON 404 (included after every other router)."""
from __future__ import annotations

from fastapi import APIRouter

from jobs.serve.responses import error

router = APIRouter(include_in_schema=False)


@router.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def unknown(rest: str):
    return error(404, "no such API route (see GET /api/openapi.json)")
