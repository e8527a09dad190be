"""Read-only queries that gather what one web UI page shows, a handful of rows at a time."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.store.tables import Agent, AgentPool, AgentToken, Run, Workspace


@dataclass(frozen=True)
class TokenLabel:
    description: str
    revoked: bool


async def runs_by_id(session: AsyncSession, run_ids: list[str]) -> dict[str, Run]:
    if not run_ids:
        return {}
    return {r.id: r for r in (await session.execute(select(Run).where(Run.id.in_(run_ids)))).scalars()}


async def token_labels(session: AsyncSession, token_ids: list[str]) -> dict[str, TokenLabel]:
    """Descriptions of the tokens agents registered with, revoked ones included (to say why they left)."""
    if not token_ids:
        return {}
    rows = await session.execute(
        select(AgentToken.id, AgentToken.description, AgentToken.revoked_at).where(AgentToken.id.in_(token_ids))
    )
    return {row.id: TokenLabel(row.description, row.revoked_at is not None) for row in rows}


async def pool_names(session: AsyncSession, pool_ids: list[str]) -> dict[str, str]:
    if not pool_ids:
        return {}
    rows = await session.execute(select(AgentPool.id, AgentPool.name).where(AgentPool.id.in_(pool_ids)))
    return {row.id: row.name for row in rows}


async def workspace_counts(session: AsyncSession, pool_ids: list[str]) -> dict[str, int]:
    """How many workspaces use each pool."""
    if not pool_ids:
        return {}
    rows = await session.execute(
        select(Workspace.agent_pool_id, func.count())
        .where(Workspace.agent_pool_id.in_(pool_ids))
        .group_by(Workspace.agent_pool_id)
    )
    return {str(pool_id): count for pool_id, count in rows.tuples()}


async def agent_names(session: AsyncSession, agent_ids: list[str]) -> dict[str, str]:
    """What to call each agent: its name, or its id when it registered without one."""
    if not agent_ids:
        return {}
    rows = await session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(agent_ids)))
    return {row.id: row.name or row.id for row in rows}
