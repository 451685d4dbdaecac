"""Who may ask: the token, the Host header, and the headers every response carries.

- ``bike serve`` binds 127.0.0.1 by default; another ``--host`` refuses to start without a token
  (:func:`check_bind`).
- With a token, every ``/api`` request must carry it: ``Authorization: Bearer T``, ``X-Bike-Token: T``, or the
  ``bike_session`` cookie that the login form (``POST /login``) sets (an HMAC of the token, HttpOnly,
  SameSite=Strict). Comparisons are constant-time (``hmac.compare_digest``). The page itself asks for the
  token with the login form.
- Without a token (loopback only), requests must name a loopback Host (``127.0.0.1``, ``localhost``,
  ``[::1]``): a web page elsewhere cannot reach the server through DNS rebinding.
- Every response says ``nosniff``, no framing, no referrer, and a Content-Security-Policy that allows only
  the server's own files.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress

COOKIE = "bike_session"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
                               "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
}


class BindError(ValueError):
    """A --host/--token combination the server refuses to start with."""


def is_loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: "str | None") -> None:
    if not is_loopback(host) and not token:
        raise BindError(f"--host {host}: not a loopback address; a server reachable from other machines needs "
                        "--token T or --token-file F (or keep the default --host 127.0.0.1)")


def session_value(token: str) -> str:
    """The cookie value for ``token`` (the token itself never goes into a cookie)."""
    return hmac.new(token.encode(), b"bike-session-v1", hashlib.sha256).hexdigest()


class Guard:
    """Decides whether a request may proceed (see the module docstring)."""

    def __init__(self, token: "str | None"):
        self.token = token or None
        self._session = session_value(token) if token else None

    def host_ok(self, host_header: "str | None") -> bool:
        if self.token:
            return True
        host = (host_header or "").strip().lower()
        if host.startswith("["):
            host = host[:host.find("]") + 1] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host in LOOPBACK_NAMES

    def authorized(self, headers, cookies) -> bool:
        if not self.token:
            return True
        given = headers.get("x-bike-token")
        auth = headers.get("authorization") or ""
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            return True
        cookie = cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._session.encode())

    def login(self, given: str) -> "str | None":
        """The cookie value when ``given`` is the token, else None."""
        if self.token and hmac.compare_digest((given or "").encode(), self.token.encode()):
            return self._session
        return None
