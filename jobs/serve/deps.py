"""What the routes share, handed to them through FastAPI's ``Depends``: the app's :class:`.service.Service`,
its :class:`.security.Guard` and the page's files (all set on ``app.state`` by ``create_app``)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .security import Guard
from .service import Service


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_guard(request: Request) -> Guard:
    return request.app.state.guard


def get_files(request: Request) -> "dict[str, bytes]":
    return request.app.state.files


#: Route parameters: ``service: ServiceDep`` gives the route the app's Service, and so on.
ServiceDep = Annotated[Service, Depends(get_service)]
GuardDep = Annotated[Guard, Depends(get_guard)]
FilesDep = Annotated[dict, Depends(get_files)]
