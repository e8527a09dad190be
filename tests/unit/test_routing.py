"""Routing: the agent protocol's FastAPI declarations served as plain routes (agent_api.plain), and the
API's routes in an order that matters only for speed."""

from __future__ import annotations

import re

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.routing import Route

from outpost.config import ServerConfig
from outpost.server.agent_api import plain
from outpost.server.agent_api import routes as agent_routes
from outpost.server.app import create_app
from outpost.server.context import Outpost, outpost


def test_every_protocol_route_is_served_with_its_path_and_methods() -> None:
    mounted = plain.mount(agent_routes.router)
    assert mounted.path == "/api/agent/v1"
    served = {(r.path, m) for r in mounted.routes if isinstance(r, Route) for m in r.methods or () if m != "HEAD"}
    declared = {
        (r.path.removeprefix("/api/agent/v1"), m) for r in agent_routes.router.routes for m in getattr(r, "methods", ())
    }
    assert served == declared and ("/jobs/{job_id}/logs", "PUT") in served


def test_an_endpoint_wanting_more_than_path_request_and_app_is_refused() -> None:
    router = APIRouter(prefix="/p")

    @router.get("/things/{thing_id}")
    async def thing(thing_id: str, limit: int, request: Request, app: Outpost = Depends(outpost)) -> Response:
        return Response()

    with pytest.raises(TypeError, match="limit"):
        plain.mount(router)


def test_no_route_of_the_api_shadows_another() -> None:
    """Routes are ordered by traffic (app.py), which is safe only while no path could match two routes."""
    paths = create_app(ServerConfig()).openapi()["paths"]
    routes = [
        (path, method, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"))
        for path, operations in paths.items()
        if path.startswith("/api/v2/")
        for method in operations
    ]
    assert len(routes) > 50
    for path, method, _ in routes:
        sample = re.sub(r"\{[^}]+\}", "sample-1", path)
        matching = [other for other, m, pattern in routes if m == method and pattern.match(sample)]
        assert matching == [path], f"{method} {path} also matches {matching}"
