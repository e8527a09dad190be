"""Request body size limits, enforced before a handler runs.

Handlers read bodies with their own limits too (`jsonapi.read_body`, the upload and artifact readers);
this outer guard refuses an oversized body by its Content-Length at once, and cuts off a body that grows
past the limit while it streams (chunked uploads declare no length), whatever the endpoint.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outpost.errors import PayloadTooLarge
from outpost.server.jsonapi import MAX_BODY, JSONAPIResponse, error_body
from outpost.store.archives import MAX_ARCHIVE_BYTES

MAX_STATE_BODY = 64 * 1024 * 1024  # a pushed state, base64 inside JSON
MAX_AGENT_UPLOAD = 256 * 1024 * 1024  # plan files and state from agents

# The first pattern that matches a path sets its limit; everything else gets MAX_BODY.
LIMITS: list[tuple[re.Pattern[str], int]] = [
    (re.compile(r"^/api/v2/uploads/"), MAX_ARCHIVE_BYTES),
    (re.compile(r"^/api/v2/workspaces/[^/]+/state-versions$"), MAX_STATE_BODY),
    (re.compile(r"^/api/agent/v1/jobs/[^/]+/(plan-file|plan-json|state)$"), MAX_AGENT_UPLOAD),
    (re.compile(r"^/api/agent/v1/jobs/[^/]+/logs$"), 4 * 1024 * 1024 + 1024),
]


def limit_for(path: str) -> int:
    for pattern, limit in LIMITS:
        if pattern.match(path):
            return limit
    return MAX_BODY


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, limit)
            return
        seen = 0

        async def counted() -> Message:
            # Raised inside the handler that reads the body: it becomes a JSON:API 413 like any OutpostError.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes for this endpoint.")
            return message

        await self.app(scope, counted, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = JSONAPIResponse(
        error_body(413, "payload too large", f"The request body is over the limit of {limit} bytes for this endpoint."),
        status_code=413,
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)


def install(app: ASGIApp) -> None:
    app.add_middleware(BodyLimit)  # type: ignore[attr-defined]
