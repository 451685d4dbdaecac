"""The answers every route shares: the one-line JSON error, fast JSON of plain objects, and a file response over
a descriptor the server already opened and verified."""
from __future__ import annotations

import json

from fastapi.responses import FileResponse, JSONResponse, Response

from .sqlrun import jsonable


def error(status: int, message: str) -> JSONResponse:
    """``{"error": MESSAGE, "status": CODE}`` with that status: every error of the API looks like this."""
    return JSONResponse({"error": message, "status": status}, status_code=status)


def json_response(obj) -> Response:
    """JSON of a plain object; values JSON cannot carry (NaN, dates...) go through ``jsonable`` only when
    the fast path fails."""
    try:
        body = json.dumps(obj, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        body = json.dumps(jsonable(obj), separators=(",", ":"))
    return Response(body, media_type="application/json")


class OpenFileResponse(FileResponse):
    """A ``FileResponse`` (Range, ETag...) over a file the server already opened and verified
    (``media.VerifiedFile``): it reads the descriptor through its ``/proc/self/fd/N`` name, never the
    recorded path again, and closes it when the response is over."""

    def __init__(self, opened, **kw):
        super().__init__(opened.path, stat_result=opened.stat, **kw)
        self.opened = opened

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.opened.close()
