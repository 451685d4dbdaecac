"""The routes of ``bike serve``, one ``APIRouter`` per resource (FastAPI's "bigger applications" layout);
``create_app`` (app.py) includes them in :data:`ROUTERS` order. Each route gets what it needs through
``Depends`` (deps.py: the Service, the Guard, the page's files); bounds a request must keep are declared on its
parameters (``Query(ge=, le=)``, from limits.py), and the Service checks them again for callers without HTTP.

- ``pages.py``    ``/``, ``/static/<file>``, ``/login`` (the web page and its login form)
- ``health.py``   ``/api/health``, ``/api/stats``
- ``search.py``   ``/api/search`` (GET: text, clip, feedback; POST: a video by example)
- ``labels.py``   ``/api/labels`` (a tag saved from the page)
- ``clips.py``    ``/api/clips/…`` (a clip, its thumbnail, its export) and ``/api/videos/…`` (a video, its file)
- ``sql.py``      ``/api/sql``
- ``fallback.py`` any other ``/api/…``: a JSON 404 (included last)
"""
from __future__ import annotations

from jobs.serve.routes import clips, fallback, health, labels, pages, search, sql

ROUTERS = [pages.router, health.router, search.router, labels.router, clips.router, sql.router, fallback.router]
