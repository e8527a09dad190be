"""Who is asking: user API tokens for the public API (agents' credentials never pass here)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.errors import Forbidden, Unauthorized
from outpost.ids import TokenKind, secret_kind
from outpost.server.context import Outpost, outpost
from outpost.store import users
from outpost.store.users import Membership, Principal
from outpost.timeutil import utcnow

_TOUCH_EVERY = timedelta(minutes=1)
_last_touch: dict[str, float] = {}


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def principal(request: Request, app: Outpost = Depends(outpost)) -> Principal:
    token = bearer(request)
    if token is None:
        raise Unauthorized("Send an API token as 'Authorization: Bearer <token>'.")
    if secret_kind(token) != TokenKind.USER:
        raise Unauthorized("This endpoint takes a user API token; agent credentials only reach the agent protocol.")
    async with app.db.read() as session:
        who = await users.authenticate(session, token)
    now = utcnow().timestamp()
    if now - _last_touch.get(who.token_id, 0.0) > _TOUCH_EVERY.total_seconds():
        _last_touch[who.token_id] = now
        async with app.db.write() as session:
            await users.touch_user_token(session, who.token_id)
    return who


async def member(session: AsyncSession, who: Principal, org_id: str) -> Membership:
    return await users.membership(session, who.user_id, org_id)


async def owner(session: AsyncSession, who: Principal, org_id: str) -> Membership:
    standing = await users.membership(session, who.user_id, org_id)
    if not standing.is_owner:
        raise Forbidden("Only members of the organization's owners team can do this.")
    return standing
