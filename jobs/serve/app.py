"""The ASGI app of ``bike serve`` (FastAPI on uvicorn): routes → :class:`.service.Service`.

API (every ``/api`` route answers JSON; errors are ``{"error": MESSAGE, "status": CODE}``, never a traceback):

    GET  /api/health                                 liveness, store, model_id, batches
    GET  /api/stats                                  videos, clips, errors, models, label histogram
    GET  /api/search?q=TEXT&k=10&where=SQL&label=L&min_score=S    text query (objects of `bike search --format json`)
         &channels=visual,text&weights=speech=0.5     channels fused (index/search/textsearch.py): results say `matched`, `text`
    GET  /api/search?clip=CLIP_ID&k=10               more like this stored clip
    POST /api/search?k=10    (body: a video file)    query by example, body at most Limits.max_upload_bytes
    GET  /api/clips/{video_id}/{n}                   a clip: span, frame times, labels (with saliency), attributes
    GET  /api/clips/{video_id}/{n}/thumb.jpg?t=S     a frame of the clip (decoded on demand, cached; 503 when busy)
    GET  /api/clips/{video_id}/{n}/export.mp4?pad=S  the clip ± S s as an MP4 download (stream copy, cached)
    GET  /api/videos/{video_id}                      a video and its clips with their top labels
    GET  /api/videos/{video_id}/media                the video file (HTTP Range → 206, so players can seek)
    GET  /api/sql?q=SELECT...                        read-only SQL, row- and time-limited

Pages: ``GET /`` (the search page), ``GET /static/<file>``, ``GET|POST /login`` (when a token is set).

The routes live in ``routes/`` (one APIRouter per resource); this module builds the app around them: the guard
middleware, the error handlers that make every error one JSON line, and ``/api/openapi.json`` (whose answers are
described by models.py).
"""
from __future__ import annotations

import logging
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from .decoding import Busy
from .responses import OpenFileResponse, error, json_response  # noqa: F401 (the app's answers: API)
from .routes import ROUTERS
from .routes.pages import STATIC
from .security import HEADERS, Guard, LoginThrottle, cross_site
from .service import Service, ServiceError

log = logging.getLogger("bike.serve")


def _static() -> "dict[str, bytes]":
    root = resources.files(__package__) / "static"
    return {name: (root / name).read_bytes() for name in STATIC}


class GuardMiddleware:
    """Plain ASGI middleware (cheaper than ``@app.middleware("http")``): refuses foreign Host headers,
    cross-site and unauthenticated ``/api`` calls (security.py), and adds the security headers to every
    response."""

    def __init__(self, app, guard: Guard):
        self.app, self.guard = app, guard
        self.extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        if not self.guard.host_ok(request.headers.get("host")):
            response = error(403, "this server answers only requests to 127.0.0.1 / localhost (Host header)")
        elif scope["path"].startswith("/api") and (why := cross_site(scope["method"], request.headers)):
            response = error(403, why)
        elif scope["path"].startswith("/api") and not self.guard.authorized(request.headers, request.cookies):
            response = error(401, "a token is required: header 'Authorization: Bearer TOKEN' or the login form at /")
        else:
            response = None

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(kv for kv in self.extra if kv[0] not in have)]}
            await send(message)
        if response is not None:
            return await response(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


def create_app(service: Service, token: "str | None" = None, throttle: "LoginThrottle | None" = None) -> FastAPI:
    """The app for one :class:`Service`. ``token``: required on every ``/api`` request when given;
    ``throttle``: how failed logins are slowed down (default :class:`.security.LoginThrottle`). The routes
    (routes/) reach the service, the guard and the page's files through ``app.state`` (deps.py)."""
    app = FastAPI(title="bike serve", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    guard = Guard(token, throttle)
    app.state.service, app.state.guard, app.state.files = service, guard, _static()

    # ---- guard, headers and errors -------------------------------------------------------------------
    app.add_middleware(GuardMiddleware, guard=guard)

    @app.exception_handler(ServiceError)
    async def service_error(request, exc: ServiceError):
        return error(exc.status, str(exc))

    @app.exception_handler(Busy)
    async def busy(request, exc: Busy):
        response = error(503, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error(exc.status_code, "not found" if exc.status_code == 404 else message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc: RequestValidationError):
        """A parameter FastAPI refused (not a number, out of its ``Query(ge=, le=)`` bounds): the project's 400."""
        parts = []
        for e in exc.errors()[:3]:
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return error(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def crash(request, exc: Exception):
        log.exception("bike serve: %s %s failed", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    # ---- routes (routes/__init__.py) -----------------------------------------------------------------
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """The OpenAPI document, once: FastAPI's, less the 422 answers it lists for every route with parameters
    (a refused parameter is answered 400, ``bad_request`` above)."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for path in doc.get("paths", {}).values():
            for op in path.values():
                if isinstance(op, dict):
                    op.get("responses", {}).pop("422", None)
        schemas = doc.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = doc
    return app.openapi_schema
