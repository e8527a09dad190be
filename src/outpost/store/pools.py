"""Agent pools and their tokens."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.agents import COUNTED
from outpost.errors import Conflict, NotFound, Unauthorized, Unprocessable
from outpost.ids import TokenKind, hash_secret, new_id, new_secret
from outpost.store import events
from outpost.store.tables import Agent, AgentPool, AgentToken, PoolAllowedWorkspace, Workspace
from outpost.timeutil import utcnow

BUILTIN_POOL_ID = "apool-builtin"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or any(c.isspace() or c == "/" for c in name):
        raise Unprocessable(
            "An agent pool name is 1 to 100 characters without spaces or '/'.", title="invalid pool name"
        )
    return name


async def create_pool(
    session: AsyncSession, org_id: str, name: object, organization_scoped: bool, allowed: list[str]
) -> AgentPool:
    name = check_name(name)
    exists = await session.execute(
        select(AgentPool.id).where(AgentPool.organization_id == org_id, AgentPool.name == name)
    )
    if exists.first():
        raise Conflict(f"An agent pool named {name!r} already exists in {org_id}.", title="name taken")
    pool = AgentPool(
        id=new_id("apool"),
        organization_id=org_id,
        name=name,
        organization_scoped=organization_scoped,
        created_at=utcnow(),
    )
    session.add(pool)
    await session.flush()
    await set_allowed_workspaces(session, pool, allowed)
    return pool


async def set_allowed_workspaces(session: AsyncSession, pool: AgentPool, workspace_ids: list[str]) -> None:
    if workspace_ids:
        found = set(
            (
                await session.execute(
                    select(Workspace.id).where(
                        Workspace.id.in_(workspace_ids), Workspace.organization_id == pool.organization_id
                    )
                )
            ).scalars()
        )
        missing = sorted(set(workspace_ids) - found)
        if missing:
            raise Unprocessable(f"Unknown workspaces for allowed-workspaces: {', '.join(missing)}.")
    await session.execute(delete(PoolAllowedWorkspace).where(PoolAllowedWorkspace.pool_id == pool.id))
    for ws_id in dict.fromkeys(workspace_ids):
        session.add(PoolAllowedWorkspace(pool_id=pool.id, workspace_id=ws_id))
    await session.flush()


async def check_linked_allowed(session: AsyncSession, pool: AgentPool) -> None:
    """A pool limited to allowed workspaces must allow every workspace that already uses it (422)."""
    if pool.organization_scoped:
        return
    allowed = set(await allowed_workspaces(session, pool.id))
    outside = [ws.name for ws in await linked_workspaces(session, pool.id) if ws.id not in allowed]
    if outside:
        raise Unprocessable(
            f"Workspaces {', '.join(outside)} use agent pool {pool.name!r}: add them to its allowed workspaces, "
            "or move them to another pool, before limiting the pool.",
            title="agent pool in use",
        )


async def allowed_workspaces(session: AsyncSession, pool_id: str) -> list[str]:
    return list(
        (
            await session.execute(
                select(PoolAllowedWorkspace.workspace_id)
                .where(PoolAllowedWorkspace.pool_id == pool_id)
                .order_by(PoolAllowedWorkspace.workspace_id)
            )
        ).scalars()
    )


async def linked_workspaces(session: AsyncSession, pool_id: str) -> list[Workspace]:
    return list(
        (
            await session.execute(select(Workspace).where(Workspace.agent_pool_id == pool_id).order_by(Workspace.name))
        ).scalars()
    )


async def get_pool(session: AsyncSession, pool_id: str, org_ids: set[str] | None = None) -> AgentPool:
    pool = await session.get(AgentPool, pool_id)
    if pool is None or pool.is_builtin or (org_ids is not None and pool.organization_id not in org_ids):
        raise NotFound(f"Agent pool {pool_id!r} was not found.")
    return pool


async def list_pools(session: AsyncSession, org_id: str) -> list[AgentPool]:
    return list(
        (
            await session.execute(select(AgentPool).where(AgentPool.organization_id == org_id).order_by(AgentPool.name))
        ).scalars()
    )


async def agent_counts(session: AsyncSession, pool_ids: list[str]) -> dict[str, int]:
    rows = await session.execute(
        select(Agent.pool_id, func.count())
        .where(Agent.pool_id.in_(pool_ids), Agent.status.in_([s.value for s in COUNTED]))
        .group_by(Agent.pool_id)
    )
    return {pool_id: count for pool_id, count in rows.all()}


async def delete_pool(session: AsyncSession, pool: AgentPool) -> None:
    linked = await linked_workspaces(session, pool.id)
    if linked:
        names = ", ".join(ws.name for ws in linked)
        raise Conflict(
            f"Agent pool {pool.name!r} is still used by workspaces: {names}. "
            "Switch them to another pool or execution mode first.",
            title="pool in use",
        )
    await wake_agents_of(session, [pool.id])  # their next heartbeat reads, and learns they are gone
    await session.delete(pool)
    await session.flush()


async def wake_agents_of(session: AsyncSession, pool_ids: list[str]) -> None:
    """Announce a change to every agent of these pools (one that deletes them, say)."""
    for agent_id in (await session.execute(select(Agent.id).where(Agent.pool_id.in_(pool_ids)))).scalars():
        events.wake_agent(session, agent_id)


async def create_token(
    session: AsyncSession, pool_id: str, description: object, user_id: str | None
) -> tuple[AgentToken, str]:
    if not isinstance(description, str) or not description.strip() or len(description) > 200:
        raise Unprocessable("An agent token needs a description of 1 to 200 characters.", title="invalid description")
    secret = new_secret(TokenKind.POOL)
    token = AgentToken(
        id=new_id("at"),
        pool_id=pool_id,
        description=description,
        token_hash=hash_secret(secret),
        created_by_user_id=user_id,
        created_at=utcnow(),
    )
    session.add(token)
    await session.flush()
    return token, secret


async def list_tokens(session: AsyncSession, pool_id: str) -> list[AgentToken]:
    return list(
        (
            await session.execute(
                select(AgentToken)
                .where(AgentToken.pool_id == pool_id, AgentToken.revoked_at.is_(None))
                .order_by(AgentToken.created_at)
            )
        ).scalars()
    )


async def get_token(session: AsyncSession, token_id: str) -> AgentToken:
    token = await session.get(AgentToken, token_id)
    if token is None or token.revoked_at is not None:
        raise NotFound(f"Agent token {token_id!r} was not found.")
    return token


async def revoke_token(session: AsyncSession, token: AgentToken) -> list[str]:
    """Revoke; return the ids of the live agents registered through it (they must exit)."""
    token.revoked_at = utcnow()
    agent_ids = list((await session.execute(select(Agent.id).where(Agent.token_id == token.id))).scalars())
    await session.flush()
    return agent_ids


async def authenticate_pool_token(session: AsyncSession, secret: str) -> AgentToken:
    token = (
        await session.execute(select(AgentToken).where(AgentToken.token_hash == hash_secret(secret)))
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None:
        raise Unauthorized("The agent token is invalid or was revoked. Create a new token for the pool.")
    await touch_tokens(session, {token.id})
    return token


async def touch_tokens(session: AsyncSession, token_ids: set[str], every: float = 60.0) -> None:
    """Keep last-used-at current while agents use the tokens, writing it at most once a minute."""
    if not token_ids:
        return
    now = utcnow()
    await session.execute(
        update(AgentToken)
        .where(
            AgentToken.id.in_(sorted(token_ids)),
            (AgentToken.last_used_at.is_(None)) | (AgentToken.last_used_at < now - timedelta(seconds=every)),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


async def ensure_builtin_pool(session: AsyncSession) -> AgentPool:
    pool = await session.get(AgentPool, BUILTIN_POOL_ID)
    if pool is None:
        # Several replicas may get here at once: the insert does nothing if another one made the pool.
        values = {
            "id": BUILTIN_POOL_ID,
            "organization_id": None,
            "name": "builtin",
            "organization_scoped": True,
            "is_builtin": True,
            "created_at": utcnow(),
        }
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        await session.execute(insert(AgentPool).values(**values).on_conflict_do_nothing(index_elements=["id"]))
        pool = await session.get(AgentPool, BUILTIN_POOL_ID)
        assert pool is not None
    return pool


async def new_builtin_token(session: AsyncSession, description: str) -> tuple[AgentToken, str]:
    """A fresh token for one server process's own agent, revoked again when that process stops."""
    await ensure_builtin_pool(session)
    return await create_token(session, BUILTIN_POOL_ID, description, None)
