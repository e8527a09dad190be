"""Every error leaves as a JSON:API error document; nothing internal leaks into a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from outpost.errors import OutpostError
from outpost.server.jsonapi import JSONAPIResponse, error_body, error_response

log = logging.getLogger("outpost.server")

_TITLES = {404: "not found", 405: "method not allowed", 400: "bad request", 401: "unauthorized", 403: "forbidden"}


def install(app: FastAPI) -> None:
    @app.exception_handler(OutpostError)
    async def _outpost(_request: Request, exc: OutpostError) -> Response:
        reason = getattr(exc, "reason", None)
        return error_response(exc, {"reason": reason} if reason else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        title = _TITLES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        return JSONAPIResponse(
            error_body(exc.status_code, title, detail),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONAPIResponse(error_body(422, "invalid request", detail), status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(request: Request, _exc: ClientDisconnect) -> Response:
        # The client left while sending its request (a canceled call, an agent stopping): no one reads
        # this answer, and it is not a server error worth a traceback.
        log.debug("client left during %s %s", request.method, request.url.path)
        return JSONAPIResponse(
            error_body(400, "client disconnected", "The request was not received whole."), status_code=400
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONAPIResponse(
            error_body(500, "internal error", "The server failed to handle the request; see its log."),
            status_code=500,
        )
