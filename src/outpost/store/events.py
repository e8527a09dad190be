"""Wake-ups collected during a transaction and delivered after it commits.

Store functions record which pools got new jobs and which agents have news (a cancel request, an order
to exit); `Database.write()` hands these to the dispatcher once the transaction is committed, so a
woken agent always finds the change in the database.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

POOLS = "outpost_wake_pools"
AGENTS = "outpost_wake_agents"


def wake_pool(session: AsyncSession, pool_id: str, count: int = 1) -> None:
    pools: dict[str, int] = session.info.setdefault(POOLS, {})
    pools[pool_id] = pools.get(pool_id, 0) + count


def wake_agent(session: AsyncSession, agent_id: str) -> None:
    session.info.setdefault(AGENTS, set()).add(agent_id)
