"""The application's HTTP routes, flattened (FastAPI 0.165 includes routers lazily; older ones do not)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute

from outpost.domain.permissions import Action
from outpost.server.auth import Guard


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    action: Action | None  # from its guard(Action.X) dependency; None when it has none


def endpoints(app: FastAPI) -> list[Endpoint]:
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]

        found = [(c.path, c.methods, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:
        found = [(getattr(r, "path", None), getattr(r, "methods", None), r) for r in app.routes]
    out = []
    for path, methods, route in found:
        if not isinstance(route, APIRoute) or path is None:
            continue
        guards = [d.call for d in route.dependant.dependencies if isinstance(d.call, Guard)]
        for method in sorted(methods or ()):
            out.append(Endpoint(method, path, guards[0].action if guards else None))
    return out
