"""Revoking an agent token, with everything that follows from it, in one transaction.

What `DELETE /authentication-tokens/{id}` does (wake the token's agents, error the runs they execute),
plus marking those agents `exited` with the reason: a revoked token's agent is refused on its next call
and exits without deregistering, so without this it would show its last status (idle or busy) until the
liveness monitor declares it unknown, then errored, minutes later, as if it had failed.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.agents import AgentStatus
from outpost.store import agents as agents_store
from outpost.store import events, pools
from outpost.store import jobs as jobs_store
from outpost.store import runs as runs_store
from outpost.store.tables import Agent, AgentToken


async def revoke_agent_token(session: AsyncSession, token: AgentToken) -> int:
    """Revoke the token; return how many live agents were told to exit."""
    told = 0
    for agent_id in await pools.revoke_token(session, token):
        events.wake_agent(session, agent_id)
        # The agent exits at once; its running jobs end now, with the reason, and free their workspaces.
        for job in await jobs_store.active_for_agent(session, agent_id):
            run = await runs_store.get(session, job.run_id, lock=True)
            await runs_store.error(
                session,
                run,
                f"The agent token {token.description!r} was revoked while agent {agent_id} ran the {job.phase}.",
            )
        agent = (await session.execute(select(Agent).where(Agent.id == agent_id).with_for_update())).scalar_one()
        if agents_store.is_live(agent):
            agents_store.set_status(agent, AgentStatus.EXITED)
            agent.exit_reason = f"Its agent token {token.description!r} was revoked."
            told += 1
    await session.flush()
    return told
