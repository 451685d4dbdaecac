"""``bike serve``: a search service over one store, and the web page that uses it (docs/serve.md).

Layout, one job per file:

- ``app.py``       the ASGI app (FastAPI on uvicorn): guard middleware, JSON errors, the routers, OpenAPI
- ``routes/``      one APIRouter per resource (pages, health/stats, search, labels, clips/videos, sql)
- ``deps.py``      what routes get through ``Depends``: the Service, the Guard, the page's files
- ``models.py``    Pydantic models of the JSON answers (what ``/api/openapi.json`` describes)
- ``responses.py`` the one-line JSON error, fast JSON, a file response over a verified descriptor
- ``service.py``   what the routes answer, without HTTP: search (paged, grouped by video), clips, videos,
                   stats, live refresh
- ``wording.py``   the page's words: a bad filter in plain words, search notes without CLI options
- ``security.py``  token (header or login cookie, compared in constant time; minimum length, login throttle),
                   Host check, cross-site check (Origin, Sec-Fetch-Site, X-Bike), response headers
- ``media.py``     a video file looked up by id only (never a path from a request), opened and verified
                   by its content id on the descriptor; thumbnails on demand, in a bounded cache
- ``sqlrun.py``    the read-only SQL of ``bike sql``, bounded (rows, memory, time, bytes: index/store/sqlbox.py)
- ``limits.py``    every bound on a request (query length, k, upload size, SQL rows, memory, seconds, bytes,
                   decoding, connections)
- ``decoding.py``  the one bounded pool every decode runs in (thumbnails, uploads); 503 when busy
- ``server.py``    the uvicorn server: request-head and body timeouts, connection limits, quick shutdown
- ``static/``      the page: index.html, app.js, app.css, login.html (no CDN, no build step)

Nothing here is imported by ``bike --help``: jobs/cli/commands/serve.py imports it inside ``run``.
"""
