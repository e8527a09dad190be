"""Who is signed in to the web UI: session cookies, CSRF tokens, and the one-time reveal of a new secret.

The session cookie carries a random secret (`opw_...`); the database keeps only its hash, so every replica
recognises it and sign-out or a revocation takes effect everywhere at once. The cookie is HttpOnly,
SameSite=Lax, scoped to /app (the API never reads it, so the API needs no CSRF defence), and Secure when
the UI is served over HTTPS.

CSRF: every state-changing form carries a token that is an HMAC of the session id under the
installation's key, so it needs no storage and is the same on every replica; the sign-in form, which has
no session yet, binds its token to a random pre-session cookie instead. Origin, when the browser sends
it, must be this server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request
from fastapi.responses import Response

from outpost.errors import Forbidden
from outpost.ids import TokenKind, secret_kind
from outpost.server.context import Outpost
from outpost.store import websessions
from outpost.store.users import Principal
from outpost.timeutil import utcnow

SESSION_COOKIE = "outpost_session"
SIGN_IN_COOKIE = "outpost_sign_in"
REVEAL_COOKIE = "outpost_reveal"
COOKIE_PATH = "/app"
LIFETIME = timedelta(hours=12)
_TOUCH_EVERY = timedelta(minutes=1)
_REVEAL_SECONDS = 120
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class CSRFRejected(Forbidden):
    """The form could not be verified."""


@dataclass(frozen=True)
class WebUser:
    principal: Principal
    session_id: str
    method: str
    csrf: str

    @property
    def email(self) -> str:
        return self.principal.email


def _mac(app: Outpost, purpose: str, *parts: str) -> str:
    message = "\0".join((purpose, *parts)).encode()
    return hmac.new(app.secret, message, hashlib.sha256).hexdigest()


def is_secure(request: Request, app: Outpost) -> bool:
    return request.url.scheme == "https" or (app.config.external_url or "").startswith("https://")


def _set_cookie(response: Response, request: Request, app: Outpost, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_secure(request, app),
    )


def _clear_cookie(response: Response, request: Request, app: Outpost, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="lax", secure=is_secure(request, app))


# --- sessions -----------------------------------------------------------------------------------


async def current_user(request: Request, app: Outpost) -> WebUser | None:
    """The signed-in user, looked up once per request."""
    if hasattr(request.state, "web_user"):
        cached: WebUser | None = request.state.web_user
        return cached
    user = await _lookup(request, app)
    request.state.web_user = user
    return user


async def _lookup(request: Request, app: Outpost) -> WebUser | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret or secret_kind(secret) != TokenKind.WEB_SESSION:
        return None
    async with app.db.read() as session:
        signed = await websessions.authenticate(session, secret)
    if signed is None:
        return None
    if utcnow() - signed.last_seen_at > _TOUCH_EVERY:
        async with app.db.write() as session:
            await websessions.touch(session, signed.session_id)
    # An API-token session acts as that token; a password session has no token (its id stands in).
    principal = Principal(
        user_id=signed.user_id, email=signed.email, token_id=signed.user_token_id or signed.session_id
    )
    return WebUser(
        principal=principal,
        session_id=signed.session_id,
        method=signed.method,
        csrf=_mac(app, "csrf", signed.session_id),
    )


async def require_user(request: Request, app: Outpost) -> WebUser:
    user = await current_user(request, app)
    if user is None:
        raise SignInRequired()
    return user


def start_session(response: Response, request: Request, app: Outpost, secret: str) -> None:
    _set_cookie(response, request, app, SESSION_COOKIE, secret, int(LIFETIME.total_seconds()))
    _clear_cookie(response, request, app, SIGN_IN_COOKIE)


def end_session(response: Response, request: Request, app: Outpost) -> None:
    _clear_cookie(response, request, app, SESSION_COOKIE)
    _clear_cookie(response, request, app, REVEAL_COOKIE)


# --- CSRF ---------------------------------------------------------------------------------------


def sign_in_nonce(request: Request) -> tuple[str, bool]:
    """The pre-session nonce the sign-in form's CSRF token is bound to; True when it is new."""
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if len(nonce) >= 32:
        return nonce, False
    return secrets.token_urlsafe(32), True


def sign_in_csrf(app: Outpost, nonce: str) -> str:
    return _mac(app, "sign-in", nonce)


def remember_sign_in_nonce(response: Response, request: Request, app: Outpost, nonce: str) -> None:
    _set_cookie(response, request, app, SIGN_IN_COOKIE, nonce, 3600)


def check_origin(request: Request, app: Outpost) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    allowed = {f"{request.url.scheme}://{request.url.netloc}"}
    if app.config.external_url:
        allowed.add(app.config.external_url.rstrip("/"))
    if origin not in allowed:
        raise CSRFRejected(
            "This form was sent from another site. Open Outpost directly and submit it again.",
            title="form from another site",
        )


async def verify_csrf(request: Request, app: Outpost, *, sign_in: bool) -> None:
    """Refuse a state-changing request whose form token does not match (nothing is changed)."""
    check_origin(request, app)
    # Who is asking is settled before the body is read: a stranger's upload is never parsed.
    if sign_in:
        nonce = request.cookies.get(SIGN_IN_COOKIE, "")
        expected = _mac(app, "sign-in", nonce) if len(nonce) >= 32 else None
    else:
        expected = (await require_user(request, app)).csrf
    form = await request.form()
    presented = form.get("csrf_token")
    if not isinstance(presented, str) or expected is None or not hmac.compare_digest(presented, expected):
        raise CSRFRejected(
            "This form has expired or did not come from this page. Reload the page and submit it again.",
            title="form expired",
        )


# --- showing a new secret once ------------------------------------------------------------------


def remember_secret(
    response: Response, request: Request, app: Outpost, user: WebUser, token_id: str, secret: str
) -> None:
    """Hand a new token's secret to the next page through a short-lived cookie, so the secret never
    sits in the database (only its hash does) and a reload cannot show it again."""
    mac = _mac(app, "reveal", user.session_id, token_id, secret)
    _set_cookie(response, request, app, REVEAL_COOKIE, f"{token_id}.{secret}.{mac}", _REVEAL_SECONDS)


def take_secret(request: Request, app: Outpost, user: WebUser, token_id: str) -> str | None:
    """The secret remembered for `token_id` in this session (the page showing it calls `forget_secret`)."""
    raw = request.cookies.get(REVEAL_COOKIE)
    if not raw:
        return None
    presented_id, _, rest = raw.partition(".")
    secret, _, mac = rest.rpartition(".")
    if presented_id != token_id or not secret:
        return None
    if not hmac.compare_digest(mac, _mac(app, "reveal", user.session_id, token_id, secret)):
        return None
    return secret


def forget_secret(response: Response, request: Request, app: Outpost) -> None:
    if REVEAL_COOKIE in request.cookies:
        _clear_cookie(response, request, app, REVEAL_COOKIE)
