"""Web UI sessions and failed sign-ins (the rules about them live in outpost.domain.signin)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.signin import WINDOW
from outpost.ids import TokenKind, hash_secret, new_id, new_secret
from outpost.store.tables import SignInFailure, User, UserToken, WebSession
from outpost.timeutil import utcnow

PASSWORD = "password"
TOKEN = "token"


def password_stamp(password_hash: str | None) -> str | None:
    """A digest of the stored password hash: it changes whenever the password is set again."""
    if not password_hash:
        return None
    return hashlib.sha256(password_hash.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    session_id: str
    user_id: str
    email: str
    method: str
    user_token_id: str | None
    last_seen_at: datetime


async def create(
    session: AsyncSession,
    user: User,
    *,
    lifetime: timedelta,
    user_token_id: str | None = None,
) -> tuple[WebSession, str]:
    """A new session for `user`: by API token when `user_token_id` is given, else by password."""
    secret = new_secret(TokenKind.WEB_SESSION)
    now = utcnow()
    row = WebSession(
        id=new_id("wsess"),
        token_hash=hash_secret(secret),
        user_id=user.id,
        method=TOKEN if user_token_id else PASSWORD,
        user_token_id=user_token_id,
        password_stamp=None if user_token_id else password_stamp(user.password_hash),
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    # Expired sessions of anyone are dropped here, so the table never grows without bound.
    await session.execute(delete(WebSession).where(WebSession.expires_at < now))
    await session.flush()
    return row, secret


async def authenticate(session: AsyncSession, secret: str) -> SignedIn | None:
    """The signed-in user behind a session cookie, or None if it is unknown, expired or revoked."""
    row = (
        await session.execute(
            select(WebSession, User.email, User.password_hash, UserToken.revoked_at)
            .join(User, User.id == WebSession.user_id)
            .outerjoin(UserToken, UserToken.id == WebSession.user_token_id)
            .where(WebSession.token_hash == hash_secret(secret))
        )
    ).first()
    if row is None:
        return None
    web, email, current_hash, token_revoked_at = row
    if web.expires_at <= utcnow():
        return None
    if web.method == TOKEN:
        if web.user_token_id is None or token_revoked_at is not None:
            return None
    elif web.password_stamp is None or web.password_stamp != password_stamp(current_hash):
        return None
    return SignedIn(
        session_id=web.id,
        user_id=web.user_id,
        email=email,
        method=web.method,
        user_token_id=web.user_token_id,
        last_seen_at=web.last_seen_at,
    )


async def touch(session: AsyncSession, session_id: str) -> None:
    await session.execute(update(WebSession).where(WebSession.id == session_id).values(last_seen_at=utcnow()))


async def end(session: AsyncSession, session_id: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.id == session_id))


# --- failed sign-ins ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecentFailures:
    same_email_and_address: list[datetime]
    same_email: list[datetime]
    same_address: list[datetime]


async def recent_failures(session: AsyncSession, email: str | None, ip: str) -> RecentFailures:
    since = utcnow() - WINDOW
    by_ip = (
        await session.execute(
            select(SignInFailure.email, SignInFailure.at).where(SignInFailure.ip == ip, SignInFailure.at > since)
        )
    ).all()
    by_email: list[datetime] = []
    if email is not None:
        by_email = list(
            (
                await session.execute(
                    select(SignInFailure.at).where(SignInFailure.email == email, SignInFailure.at > since)
                )
            ).scalars()
        )
    return RecentFailures(
        same_email_and_address=[at for who, at in by_ip if email is not None and who == email],
        same_email=by_email,
        same_address=[at for _who, at in by_ip],
    )


async def record_failure(session: AsyncSession, email: str | None, ip: str) -> None:
    now = utcnow()
    session.add(SignInFailure(id=new_id("sif"), email=email, ip=ip, at=now))
    await session.execute(delete(SignInFailure).where(SignInFailure.at < now - WINDOW))
    await session.flush()


async def clear_failures(session: AsyncSession, email: str, ip: str) -> None:
    """A successful sign-in forgives this address's mistakes with this email (not other addresses')."""
    await session.execute(delete(SignInFailure).where(SignInFailure.email == email, SignInFailure.ip == ip))
