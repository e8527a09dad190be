"""Sign-in (email and password, or an API token) and sign-out."""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from outpost.domain import signin
from outpost.errors import Unauthorized
from outpost.ids import TokenKind, secret_kind
from outpost.passwords import MAX_LENGTH, dummy_verify, verify_password
from outpost.server.context import Outpost, outpost
from outpost.server.ui import render
from outpost.server.ui.routes.common import context, csrf_checked, field
from outpost.server.ui.sessions import (
    LIFETIME,
    current_user,
    end_session,
    remember_sign_in_nonce,
    sign_in_csrf,
    sign_in_nonce,
    start_session,
    verify_csrf,
)
from outpost.store import users, websessions
from outpost.timeutil import utcnow

router = APIRouter()

_WRONG_PASSWORD = (
    "The email or password is not right. Check both and try again. "
    "An administrator can set a new password with `outpost admin set-password`."
)
_WRONG_TOKEN = (
    "That API token is not valid: it may be mistyped or revoked. Paste a user API token (it starts with opu_)."
)


def _next(raw: str | None) -> str:
    """Where to go after signing in: a page of this UI only (never another site)."""
    if raw and raw.startswith("/app/") and "//" not in raw and "\\" not in raw and "@" not in raw:
        return raw
    return "/app/"


def _sign_in_page(
    request: Request, app: Outpost, *, error: str | None = None, status: int = 200, email: str = ""
) -> Response:
    nonce, new = sign_in_nonce(request)
    response = render.page(
        request,
        "sign_in.html",
        context(
            request,
            None,
            title="Sign in",
            csrf=sign_in_csrf(app, nonce),
            error=error,
            email=email,
            next=_next(request.query_params.get("next")),
        ),
        status=status,
    )
    if new:
        remember_sign_in_nonce(response, request, app, nonce)
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request, app: Outpost = Depends(outpost)) -> Response:
    if await current_user(request, app) is not None:
        return render.redirect(_next(request.query_params.get("next")))
    return _sign_in_page(request, app)


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _too_many(request: Request, app: Outpost, wait_seconds: float, email: str) -> Response:
    minutes = max(1, math.ceil(wait_seconds / 60))
    response = _sign_in_page(
        request,
        app,
        status=429,
        email=email,
        error=f"Too many failed sign-ins. Wait {minutes} minute{'s' if minutes > 1 else ''}, then try again.",
    )
    response.headers["retry-after"] = str(math.ceil(wait_seconds))
    return response


@router.post("/sign-in")
async def sign_in(request: Request, app: Outpost = Depends(outpost)) -> Response:
    await verify_csrf(request, app, sign_in=True)
    form = await request.form()
    ip = _client_address(request)
    token = field(form, "token")
    email = "" if token else field(form, "email")
    key = email.lower() or None
    async with app.db.read() as session:
        recent = await websessions.recent_failures(session, key, ip)
    wait = signin.retry_after(
        now=utcnow(),
        same_email_and_address=recent.same_email_and_address,
        same_email=recent.same_email,
        same_address=recent.same_address,
    )
    if wait.total_seconds() > 0:
        return _too_many(request, app, wait.total_seconds(), email)

    user_token_id: str | None = None
    user = None
    if token:
        if secret_kind(token) == TokenKind.USER:
            try:
                async with app.db.read() as session:
                    who = await users.authenticate(session, token)
                    user = await users.get_user(session, who.user_id)
                user_token_id = who.token_id
            except Unauthorized:
                user = None
        error = _WRONG_TOKEN
    else:
        password = form.get("password")
        password = password if isinstance(password, str) else ""
        if not email or not password:
            return _sign_in_page(
                request, app, status=400, email=email, error="Enter your email and password, or an API token."
            )
        async with app.db.read() as session:
            found = await users.user_by_email(session, email)
        if found is None or not found.password_hash or len(password) > MAX_LENGTH:
            await asyncio.to_thread(dummy_verify, password)  # as slow as a real check: no account probing
        elif await asyncio.to_thread(verify_password, password, found.password_hash):
            user = found
        error = _WRONG_PASSWORD

    if user is None:
        async with app.db.write() as session:
            await websessions.record_failure(session, key, ip)
        return _sign_in_page(request, app, status=401, email=email, error=error)

    previous = await current_user(request, app)
    async with app.db.write() as session:
        if previous is not None:
            await websessions.end(session, previous.session_id)  # never keep a session across sign-ins
        if key is not None:
            await websessions.clear_failures(session, key, ip)
        _, secret = await websessions.create(session, user, lifetime=LIFETIME, user_token_id=user_token_id)
    response = render.redirect(_next(request.query_params.get("next")))
    start_session(response, request, app, secret)
    return response


@router.post("/sign-out", dependencies=[Depends(csrf_checked)])
async def sign_out(request: Request, app: Outpost = Depends(outpost)) -> Response:
    user = await current_user(request, app)
    if user is not None:
        async with app.db.write() as session:
            await websessions.end(session, user.session_id)
    response = render.redirect("/app/sign-in?done=signed-out")
    end_session(response, request, app)
    return response
