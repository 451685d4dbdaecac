"""Who may ask: the token, the Host header, and the headers every response carries.

- ``bike serve`` binds 127.0.0.1 by default; another ``--host`` refuses to start without a token
  (:func:`check_bind`).
- With a token, every ``/api`` request must carry it: ``Authorization: Bearer T``, ``X-Bike-Token: T``, or the
  ``bike_session`` cookie that the login form (``POST /login``) sets (an HMAC of the token, HttpOnly,
  SameSite=Strict). Comparisons are constant-time (``hmac.compare_digest``). The page itself asks for the
  token with the login form.
- Without a token (loopback only), requests must name a loopback Host (``127.0.0.1``, ``localhost``,
  ``[::1]``): a web page elsewhere cannot reach the server through DNS rebinding.
- Cross-site requests (:func:`cross_site`): a page on another origin can make the browser send requests to a
  loopback server (a ``<form>`` POST, an ``<img>``, a "simple" ``fetch``) even when it cannot read the answer.
  Every ``/api`` request whose ``Sec-Fetch-Site`` is not ``same-origin``/``none`` or whose ``Origin`` is not the
  server's own is refused (403), and a request that changes something (any method but GET/HEAD/OPTIONS)
  needs a same-origin ``Origin`` or the custom header ``X-Bike: 1`` (which the page sends, and which no
  other site can add without a CORS preflight that this server never grants). Clients that send neither
  header (curl, scripts) may GET as before.
- Tokens are at least :data:`MIN_TOKEN_CHARS` characters (:func:`check_token`), and the login form is
  throttled per client (:class:`LoginThrottle`: after a few wrong tokens in a row, 429 for a delay that
  doubles with each further failure).
- Every response says ``nosniff``, no framing, no referrer, and a Content-Security-Policy that allows only
  the server's own files.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from urllib.parse import urlsplit

COOKIE = "bike_session"
#: The shortest token ``bike serve`` accepts (a guessable token is no protection on a network).
MIN_TOKEN_CHARS = 16
#: The methods a browser may send cross-site without a preflight that only read (the rest change something).
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
#: ``Sec-Fetch-Site`` values of requests made by this server's own page, or typed into the address bar.
OWN_SITES = {"same-origin", "none"}
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


def check_token(token: "str | None", what: str = "--token") -> None:
    """Refuse a token shorter than :data:`MIN_TOKEN_CHARS` (:class:`BindError`, one line)."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise BindError(f"{what}: the token is too short ({len(token)} characters; at least {MIN_TOKEN_CHARS}); "
                        "make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'")


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def same_origin(origin: str, host_header: "str | None") -> bool:
    """Whether an ``Origin`` header names the host (and port) this request was sent to (its Host header). The
    scheme is not compared: behind a TLS proxy the page is https while this server sees http."""
    try:
        o = urlsplit(origin.strip())
        if o.scheme not in ("http", "https") or not o.hostname or not host_header:
            return False
        h = urlsplit("//" + host_header.strip())
        return (o.hostname.lower() == (h.hostname or "").lower()
                and (o.port or _default_port(o.scheme)) == (h.port or _default_port(o.scheme)))
    except ValueError:                               # a port that is no number, a malformed bracket
        return False


def cross_site(method: str, headers) -> "str | None":
    """Why an ``/api`` request is refused as coming from another site (see the module docstring), or None."""
    site = headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in OWN_SITES:
        return (f"cross-site request refused (Sec-Fetch-Site: {site[:40]}): the API answers only this server's "
                "own page and clients that are not browsers")
    origin = headers.get("origin")
    if origin is not None:
        if not same_origin(origin, headers.get("host")):
            return (f"cross-site request refused (Origin: {origin[:100]}): the API answers only this server's "
                    "own page and clients that are not browsers")
        return None
    if method.upper() not in READ_METHODS and headers.get("x-bike") != "1":
        return (f"{method.upper()} refused: add the header 'X-Bike: 1' (the page sends it; it proves the request "
                "does not come from another site's page)")
    return None


class LoginThrottle:
    """Failed logins per client address: from the ``tries``-th failure in a row on (failures are forgotten
    ``window_s`` after the last one), each failure locks the client out for ``base_s``, then twice as long
    for each further failure (at most ``max_s``); while locked out, every login attempt, right or wrong, is
    answered 429. A success clears the client's record.
    At most ``max_clients`` addresses are remembered (the oldest are forgotten first). ``clock``: seconds,
    monotonic."""

    def __init__(self, tries: int = 5, base_s: float = 1.0, max_s: float = 300.0, window_s: float = 900.0,
                 max_clients: int = 10_000, clock=time.monotonic):
        self.tries, self.base_s, self.max_s, self.window_s = tries, base_s, max_s, window_s
        self.max_clients, self.clock = max_clients, clock
        self._lock = threading.Lock()
        self._clients: "dict[str, tuple[int, float, float]]" = {}     # address → (failures, last, locked until)

    def wait_s(self, client: str) -> float:
        """Seconds this client must still wait before it may try again (0: it may)."""
        now = self.clock()
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                return 0.0
            if now - entry[1] > self.window_s:
                del self._clients[client]
                return 0.0
            return max(0.0, entry[2] - now)

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            n, last, _ = self._clients.pop(client, (0, now, 0.0))
            n = 1 if now - last > self.window_s else n + 1
            over = n - self.tries                               # 0 at the tries-th failure
            until = now + min(self.max_s, self.base_s * 2 ** min(over, 60)) if over >= 0 else 0.0
            self._clients[client] = (n, now, until)             # re-inserted: dict order = least recent first
            while len(self._clients) > self.max_clients:
                del self._clients[next(iter(self._clients))]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


def session_value(token: str) -> str:
    """The cookie value for ``token`` (the token itself never goes into a cookie)."""
    return hmac.new(token.encode(), b"bike-session-v1", hashlib.sha256).hexdigest()


class Guard:
    """Decides whether a request may proceed (see the module docstring)."""

    def __init__(self, token: "str | None", throttle: "LoginThrottle | None" = None):
        self.token = token or None
        self._session = session_value(token) if token else None
        self.throttle = throttle or LoginThrottle()

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
