"""The ASGI app of ``bike serve`` (FastAPI on uvicorn): routes → :class:`.service.Service`.

API (every ``/api`` route answers JSON; errors are ``{"error": MESSAGE, "status": CODE}``, never a traceback):

    GET  /api/health                                 liveness, store, model_id, batches
    GET  /api/stats                                  videos, clips, errors, models, label histogram
    GET  /api/search?q=TEXT&k=10&where=SQL&label=L&min_score=S    text query (objects of `bike search --format json`)
         &channels=visual,text&weights=speech=0.5     channels fused (index/textsearch.py): results say `matched`, `text`
    GET  /api/search?clip=CLIP_ID&k=10               more like this stored clip
    POST /api/search?k=10    (body: a video file)    query by example, body at most Limits.max_upload_bytes
    GET  /api/clips/{video_id}/{n}                   a clip: span, frame times, labels (with saliency), attributes
    GET  /api/clips/{video_id}/{n}/thumb.jpg?t=S     a frame of the clip (decoded on demand, cached; 503 when busy)
    GET  /api/clips/{video_id}/{n}/export.mp4?pad=S  the clip ± S s as an MP4 download (stream copy, cached)
    GET  /api/videos/{video_id}                      a video and its clips with their top labels
    GET  /api/videos/{video_id}/media                the video file (HTTP Range → 206, so players can seek)
    GET  /api/sql?q=SELECT...                        read-only SQL, row- and time-limited

Pages: ``GET /`` (the search page), ``GET /static/<file>``, ``GET|POST /login`` (when a token is set).
"""
from __future__ import annotations

import json
import logging
import math
import mimetypes
import os
import tempfile
from importlib import resources
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .decoding import Busy
from .security import COOKIE, HEADERS, Guard, LoginThrottle, cross_site
from .service import Service, ServiceError
from .sqlrun import jsonable

log = logging.getLogger("bike.serve")

#: The page's files (read once at start; nothing else is served from disk but store-recorded videos).
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8", "login.html": "text/html; charset=utf-8"}


def _static() -> "dict[str, bytes]":
    root = resources.files(__package__) / "static"
    return {name: (root / name).read_bytes() for name in STATIC}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


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


def create_app(service: Service, token: "str | None" = None, throttle: "LoginThrottle | None" = None) -> FastAPI:
    """The app for one :class:`Service`. ``token``: required on every ``/api`` request when given;
    ``throttle``: how failed logins are slowed down (default :class:`.security.LoginThrottle`)."""
    app = FastAPI(title="bike serve", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.service = service
    guard = Guard(token, throttle)
    files = _static()

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
        parts = []
        for e in exc.errors()[:3]:
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return error(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def crash(request, exc: Exception):
        log.exception("bike serve: %s %s failed", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    # ---- page ----------------------------------------------------------------------------------------
    def page(name: str, status: int = 200) -> Response:
        return Response(files[name], status_code=status, media_type=STATIC[name],
                        headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index(request: Request):
        if not guard.authorized(request.headers, request.cookies):
            return page("login.html")
        return page("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in STATIC:
            return error(404, "not found")
        return page(name)

    @app.get("/login", include_in_schema=False)
    def login_form():
        return page("login.html")

    def login_page(message: bytes, status: int, headers=None) -> Response:
        return HTMLResponse(files["login.html"].replace(b"<!--error-->", b"<p class=err role=alert>" + message
                                                        + b"</p>"), status_code=status, headers=headers)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > 4096:
                return error(413, "login form too large")
        # From here to the throttle's record of the outcome nothing awaits: on the one event-loop thread, many
        # concurrent guesses from one client cannot all pass the check before the first failure is counted.
        client = request.client.host if request.client else "?"
        wait = guard.throttle.wait_s(client)
        if wait > 0:                                 # right or wrong, no guess is tried now
            seconds = max(1, math.ceil(wait))
            return login_page(f"Too many wrong tokens: wait {seconds} s before trying again.".encode(), 429,
                              {"Retry-After": str(seconds)})
        given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        session = guard.login(given)
        if session is None:
            guard.throttle.failed(client)
            return login_page(b"Wrong token.", 401)
        guard.throttle.succeeded(client)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
        return response

    # ---- API -----------------------------------------------------------------------------------------
    @app.get("/api/health")
    def health():
        return service.health()

    @app.get("/api/stats")
    def stats():
        return service.stats()

    @app.get("/api/search")
    def search(q: "str | None" = None, k: int = 10, where: "str | None" = None, clip: "str | None" = None,
               label: "str | None" = None, min_score: "float | None" = None, channels: "str | None" = None,
               weights: "str | None" = None, dedup: bool = True, positive: "str | None" = None,
               negative: "str | None" = None):
        return json_response(service.search(q=q, k=k, where=where or None, clip=clip or None,
                                            label=label or None, min_score=min_score, channels=channels or None,
                                            weights=weights or None, dedup=dedup, positive=positive or None,
                                            negative=negative or None))

    @app.post("/api/search")
    async def search_video(request: Request, k: int = 10, where: "str | None" = None,
                           label: "str | None" = None, min_score: "float | None" = None,
                           positive: "str | None" = None, negative: "str | None" = None):
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
                                       positive=positive or None, negative=negative or None),
                timeout_s=service.video_timeout_s + service.limits.thumb_timeout_s))
        finally:
            os.unlink(path)

    @app.post("/api/labels")
    def save_label(name: str = "", positive: "str | None" = None, negative: "str | None" = None,
                   q: "str | None" = None):
        return json_response(service.save_label(name, positive, negative, q))

    @app.get("/api/clips/{video_id}/{n}")
    def clip(video_id: str, n: str):
        return service.clip(f"{video_id}/{n}")

    @app.get("/api/clips/{video_id}/{n}/thumb.jpg")
    async def thumb(video_id: str, n: str, t: "float | None" = None):
        clip_id = f"{video_id}/{n}"
        hit, name, job = await run_in_threadpool(service.thumb_job, clip_id, t)
        path = hit or await service.decoding.run(job, timeout_s=service.limits.thumb_timeout_s, key=name)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    @app.get("/api/clips/{video_id}/{n}/export.mp4")
    async def export_clip(video_id: str, n: str, pad: float = 0.0):
        clip_id = f"{video_id}/{n}"
        hit, name, job, download = await run_in_threadpool(service.export_job, clip_id, pad)
        path = hit or await service.decoding.run(job, timeout_s=service.limits.thumb_timeout_s, key=name)
        return FileResponse(path, media_type="video/mp4", filename=download)

    @app.get("/api/videos/{video_id}")
    def video(video_id: str):
        return service.video(video_id)

    @app.get("/api/videos/{video_id}/media")
    def video_media(video_id: str):
        opened = service.open_media(video_id)
        kind = mimetypes.guess_type(opened.real.name)[0] or "application/octet-stream"
        return OpenFileResponse(opened, media_type=kind if kind.startswith("video/") else "application/octet-stream")

    @app.get("/api/sql")
    def sql(q: str = ""):
        return Response(service.sql_json(q), media_type="application/json")     # bounded JSON, passed as is

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    def unknown(rest: str):
        return error(404, "no such API route (see GET /api/openapi.json)")

    return app
