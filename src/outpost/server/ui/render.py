"""Templates, the filters they use, and the headers every UI response carries."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outpost import __version__
from outpost.timeutil import utcnow

HERE = Path(__file__).parent
STATIC_PATH = "/app/-/static"

templates = Jinja2Templates(directory=str(HERE / "templates"))


def static(name: str) -> str:
    return f"{STATIC_PATH}/{name}?v={__version__}"


def when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((utcnow() - value).total_seconds())
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def stamp(value: str) -> str:
    """A stored ISO timestamp (run and phase status times), shown like `when`."""
    try:
        return when(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return value


def label(status: str) -> str:
    return status.replace("_", " ")


templates.env.globals.update(static=static)
templates.env.filters.update(when=when, ago=ago, iso=iso, label=label, stamp=stamp)


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    return response


def fragment(name: str, context: dict[str, Any]) -> str:
    return templates.get_template(name).render(context)


# Scripts and styles come only from our own static files (no inline script), forms post only here,
# and no other site may frame the UI.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds the headers above to every response; pages about a user's data are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Mounted apps see the full path or the path below the mount, depending on Starlette's version.
        is_static = "/-/static/" in scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _HEADERS if k not in names]
                if not is_static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def redirect(url: str) -> Response:
    return Response(status_code=303, headers={"location": url})
