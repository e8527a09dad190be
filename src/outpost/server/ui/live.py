"""Server-sent events for live pages: each stream polls the database, so it works on every replica.

A stream ends when the client leaves (Starlette cancels it), when the server shuts down, or when the
session that opened it is no longer valid (checked every few seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from outpost.server.context import Outpost
from outpost.server.ui.sessions import SESSION_COOKIE
from outpost.store import websessions

TICK = 1.0
_RECHECK_SESSION_EVERY = 10  # ticks
_KEEPALIVE_EVERY = 15  # ticks


def event(name: str, data: str, event_id: str | None = None) -> str:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in data.split("\n")]
    return "\n".join(lines) + "\n\n"


Poll = Callable[[], Awaitable[tuple[list[str], bool]]]


def stream(request: Request, app: Outpost, poll: Poll, *, tick: float = TICK) -> StreamingResponse:
    """Send what `poll` returns each tick, until it says it is done (or the client or server stops)."""
    secret = request.cookies.get(SESSION_COOKIE, "")

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        n = 0
        while not app.dispatcher.closed:
            if n and n % _RECHECK_SESSION_EVERY == 0:
                async with app.db.read() as session:
                    if await websessions.authenticate(session, secret) is None:
                        yield event("signed-out", "Your session has ended.")
                        return
            out, done = await poll()
            for chunk in out:
                yield chunk
            if done:
                yield event("done", "")
                return
            if not out and n % _KEEPALIVE_EVERY == 0:
                yield ": keep-alive\n\n"
            n += 1
            await asyncio.sleep(tick)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"cache-control": "no-store", "x-accel-buffering": "no"}
    )
