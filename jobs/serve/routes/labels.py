"""``POST /api/labels``: "Save as tag" on the page (``bike label``: a tag from positive / negative clips)."""
from __future__ import annotations

from fastapi import APIRouter

from jobs.serve.deps import ServiceDep
from jobs.serve.models import ERRORS, LabelSaved
from jobs.serve.responses import json_response

router = APIRouter(prefix="/api", tags=["labels"], responses=ERRORS)


@router.post("/labels", responses={200: {"model": LabelSaved}})
def save_label(service: ServiceDep, name: str = "", positive: "str | None" = None, negative: "str | None" = None,
               q: "str | None" = None):
    return json_response(service.save_label(name, positive, negative, q))
