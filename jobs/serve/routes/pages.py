"""The web page: ``GET /`` (the search page, or the login form while a token is needed), ``GET /static/<file>``,
``GET|POST /login`` (the token form; throttled per client, security.LoginThrottle)."""
from __future__ import annotations

import math
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jobs.serve.deps import FilesDep, GuardDep
from jobs.serve.responses import error
from jobs.serve.security import COOKIE

router = APIRouter(include_in_schema=False)

#: The page's files (read once at start; nothing else is served from disk but store-recorded videos).
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8", "login.html": "text/html; charset=utf-8"}


def page(files: dict, name: str, status: int = 200) -> Response:
    return Response(files[name], status_code=status, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def login_page(files: dict, message: bytes, status: int, headers=None) -> Response:
    return HTMLResponse(files["login.html"].replace(b"<!--error-->", b"<p class=err role=alert>" + message
                                                    + b"</p>"), status_code=status, headers=headers)


@router.get("/")
def index(request: Request, guard: GuardDep, files: FilesDep):
    if not guard.authorized(request.headers, request.cookies):
        return page(files, "login.html")
    return page(files, "index.html")


@router.get("/static/{name}")
def static(name: str, files: FilesDep):
    if name not in STATIC:
        return error(404, "not found")
    return page(files, name)


@router.get("/login")
def login_form(files: FilesDep):
    return page(files, "login.html")


@router.post("/login")
async def login(request: Request, guard: GuardDep, files: FilesDep):
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
        return login_page(files, f"Too many wrong tokens: wait {seconds} s before trying again.".encode(), 429,
                          {"Retry-After": str(seconds)})
    given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
    session = guard.login(given)
    if session is None:
        guard.throttle.failed(client)
        return login_page(files, b"Wrong token.", 401)
    guard.throttle.succeeded(client)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
    return response
