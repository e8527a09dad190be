"""The agent protocol served past FastAPI's routing and dependency resolution.

Agents make most of a server's requests (every idle agent's heartbeats and polls, a running job's log
appends), and each spends little in Outpost's own code: FastAPI's included-router matching (it matches a
route twice per request) and its dependency resolution took about a third of the server's CPU for a log
append (measured with py-spy). The protocol's endpoints are declared once, with FastAPI, in `routes`
(that declaration gives the OpenAPI document); this module serves the same functions through Starlette's
plain `Route`s, mounted ahead of every FastAPI route. Each endpoint takes only its path parameters, the
request and the application state, which is what makes the shortcut safe; `mount` refuses any other.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

Endpoint = Callable[..., Awaitable[Response]]


def mount(router: APIRouter) -> Mount:
    """Starlette routes for every route of `router`, under its prefix."""
    routes = []
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r} is not an APIRoute")
        path = route.path.removeprefix(router.prefix)
        _check(route.endpoint, route.param_convertors.keys())
        routes.append(Route(path, _serve(route.endpoint), methods=sorted(route.methods or ()), name=route.name))
    return Mount(router.prefix, routes=routes)


def _check(endpoint: Callable[..., Any], path_params: Any) -> None:
    expected = {*path_params, "request", "app"}
    got = set(inspect.signature(endpoint).parameters)
    if got != expected:
        raise TypeError(f"{endpoint.__name__} takes {sorted(got)}; a plain route can give only {sorted(expected)}")


def _serve(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return await endpoint(**request.path_params, request=request, app=request.app.state.outpost)

    serve.__name__ = endpoint.__name__
    return serve
