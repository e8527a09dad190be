"""What every page handler shares: the signed-in user, CSRF on every state-changing request, forms."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile

from outpost.server.context import Outpost, outpost
from outpost.server.ui.sessions import SAFE_METHODS, WebUser, require_user, verify_csrf

# Messages shown after a successful action (a code in the redirect, never free text from the URL).
NOTICES = {
    "pool-created": "Agent pool created. Create a token for it below, then start an agent with the token.",
    "token-revoked": "Token revoked. Agents that used it were told to exit.",
    "workspace-created": "Workspace created. Queue a run below, or review its settings first.",
    "settings-saved": "Settings saved.",
    "variable-added": "Variable added.",
    "variable-saved": "Variable saved.",
    "variable-deleted": "Variable deleted.",
    "run-queued": "Run queued.",
    "apply": "Apply confirmed: the apply is queued.",
    "discard": "Run discarded.",
    "cancel": "Cancel requested.",
    "force-cancel": "Run force-canceled.",
    "signed-out": "You are signed out.",
}


async def signed_in(request: Request, app: Outpost = Depends(outpost)) -> WebUser:
    return await require_user(request, app)


async def csrf_checked(request: Request, app: Outpost = Depends(outpost)) -> None:
    """Router-wide: no state-changing request reaches a handler without a valid CSRF token."""
    if request.method not in SAFE_METHODS:
        await verify_csrf(request, app, sign_in=False)


def context(request: Request, user: WebUser | None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "user": user,
        "csrf": user.csrf if user else "",
        "notice": NOTICES.get(request.query_params.get("done", "")),
        "error": None,
    }
    base.update(extra)
    return base


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def checked(form: FormData, name: str) -> bool:
    return form.get(name) in ("on", "true", "1")


def upload(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    if isinstance(value, UploadFile) and value.filename:
        return value
    return None


def server_address(request: Request, app: Outpost) -> str:
    """The address agents and people reach this server at (the UI is mounted below it)."""
    if app.config.external_url:
        return app.config.external_url.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}"
