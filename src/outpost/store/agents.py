"""Agents: registration, sessions, heartbeats and statuses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.agents import DELETABLE, LIVE, AgentStatus
from outpost.domain.jobs import ACTIVE_JOB
from outpost.errors import NotFound, PreconditionFailed, Unauthorized
from outpost.ids import TokenKind, hash_secret, new_id, new_secret
from outpost.store import events
from outpost.store.tables import Agent, AgentToken, Job
from outpost.timeutil import utcnow


class AgentGone(Unauthorized):
    """The agent may not continue."""

    status = 403

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail, title="agent must exit")
        self.reason = reason


async def register(
    session: AsyncSession,
    token: AgentToken,
    *,
    name: str | None,
    ip_address: str | None,
    hostname: str | None,
    version: str | None,
    capacity: int,
) -> tuple[Agent, str]:
    secret = new_secret(TokenKind.AGENT_SESSION)
    now = utcnow()
    agent = Agent(
        id=new_id("agent"),
        pool_id=token.pool_id,
        token_id=token.id,
        name=name,
        status=AgentStatus.IDLE.value,
        ip_address=ip_address,
        hostname=hostname,
        version=version,
        capacity=capacity,
        session_hash=hash_secret(secret),
        created_at=now,
        last_ping_at=now,
        status_changed_at=now,
    )
    session.add(agent)
    await session.flush()
    return agent, secret


# Built once: every agent call runs this, and building a statement costs more than executing it cached.
_SESSION = (
    select(Agent, AgentToken.id, AgentToken.revoked_at)
    .outerjoin(AgentToken, AgentToken.id == Agent.token_id)
    .where(Agent.session_hash == bindparam("session_hash"))
)
# Locked rows are read afresh: the row may have changed since this transaction first loaded it.
_SESSION_LOCKED = _SESSION.with_for_update(of=Agent).execution_options(populate_existing=True)
_SESSION_IF_FREE = _SESSION.with_for_update(of=Agent, skip_locked=True).execution_options(populate_existing=True)


async def authenticate_session(session: AsyncSession, secret: str, *, lock: bool = False) -> Agent:
    """The agent behind a session credential, if it may still work; AgentGone with the reason otherwise.

    One statement: every agent call starts here, so the token's revocation is joined in, not fetched."""
    query = _SESSION_LOCKED if lock else _SESSION
    row = (await session.execute(query, {"session_hash": hash_secret(secret)})).first()
    if row is None:
        raise Unauthorized("The agent session is unknown. Restart the agent to register again.")
    return _may_work(*row)


async def lock_session_at_once(session: AsyncSession, secret: str) -> Agent | None:
    """`authenticate_session(lock=True)` for a transaction that already holds other rows and so must not
    wait for the agent's: None when another transaction holds it (PostgreSQL's SKIP LOCKED; SQLite has one
    writer) or the session is unknown. AgentGone as there."""
    row = (await session.execute(_SESSION_IF_FREE, {"session_hash": hash_secret(secret)})).first()
    return None if row is None else _may_work(*row)


def _may_work(agent: Agent, token_id: str | None, revoked_at: datetime | None) -> Agent:
    if token_id is None or revoked_at is not None:
        raise AgentGone("token_revoked", "The agent's pool token was revoked.")
    if agent.status == AgentStatus.ERRORED.value:
        raise AgentGone(
            "agent_errored",
            agent.exit_reason or "The server declared this agent errored after it stopped reporting.",
        )
    if agent.status == AgentStatus.EXITED.value:
        raise AgentGone("agent_exited", "This agent already deregistered.")
    return agent


def set_status(agent: Agent, status: AgentStatus, now: datetime | None = None) -> None:
    if agent.status != status.value:
        agent.status = status.value
        agent.status_changed_at = now or utcnow()


_ACTIVE_JOBS = (
    select(func.count())
    .select_from(Job)
    .where(Job.agent_id == bindparam("agent_id"), Job.status.in_([s.value for s in ACTIVE_JOB]))
)


async def active_job_count(session: AsyncSession, agent_id: str) -> int:
    return (await session.execute(_ACTIVE_JOBS, {"agent_id": agent_id})).scalar_one()


# An agent whose last job ended is idle again: one statement, which re-checks under the row's lock that the
# agent is busy and holds no other active job (`job_id`: the one ending, left out whether or not its new
# status has been flushed by the time this runs).
_IDLE_IF_FREE = (
    update(Agent)
    .where(
        Agent.id == bindparam("agent_id"),
        Agent.status == AgentStatus.BUSY.value,
        ~select(Job.id)
        .where(
            Job.agent_id == bindparam("agent_id"),
            Job.id != bindparam("job_id"),
            Job.status.in_([s.value for s in ACTIVE_JOB]),
        )
        .exists(),
    )
    .values(status=AgentStatus.IDLE.value, status_changed_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


async def idle_if_free(session: AsyncSession, agent_id: str, job_id: str) -> None:
    await session.execute(_IDLE_IF_FREE, {"agent_id": agent_id, "job_id": job_id, "now": utcnow()})


def ping(agent: Agent, ip_address: str | None, *, busy: bool) -> None:
    """Record a sign of life; the status follows the agent's active jobs (idle or busy)."""
    now = utcnow()
    agent.last_ping_at = now
    if ip_address:
        agent.ip_address = ip_address
    set_status(agent, AgentStatus.BUSY if busy else AgentStatus.IDLE, now)


async def record_pings(session: AsyncSession, pings: dict[str, datetime]) -> None:
    """Batched heartbeats of idle agents (outpost.server.pings): one statement for all. Rows are taken
    in id order, so two replicas flushing at once cannot deadlock; a time never moves backwards."""
    statement = (
        update(Agent)
        .where(Agent.id == bindparam("agent"), Agent.last_ping_at < bindparam("at"))
        .values(last_ping_at=bindparam("at"))
    )
    connection = await session.connection()  # a Core executemany, not the ORM's bulk update by key
    await connection.execute(statement, [{"agent": a, "at": pings[a]} for a in sorted(pings)])


async def deregister(session: AsyncSession, agent: Agent) -> None:
    agent.last_ping_at = utcnow()
    set_status(agent, AgentStatus.EXITED)
    events.wake_agent(session, agent.id)  # its session ends on every replica (outpost.server.quiet)


async def list_agents(session: AsyncSession, pool_id: str, last_ping_since: datetime | None = None) -> list[Agent]:
    query = select(Agent).where(Agent.pool_id == pool_id)
    if last_ping_since is not None:
        query = query.where(Agent.last_ping_at >= last_ping_since)
    return list((await session.execute(query.order_by(Agent.created_at, Agent.id))).scalars())


async def get_agent(session: AsyncSession, agent_id: str) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"Agent {agent_id!r} was not found.")
    return agent


async def delete_agent(session: AsyncSession, agent: Agent) -> None:
    if AgentStatus(agent.status) not in DELETABLE:
        raise PreconditionFailed(
            f"Agent {agent.id} is {agent.status}: only unknown, errored or exited agents can be deleted.",
            title="agent still active",
        )
    await session.delete(agent)
    await session.flush()


def is_live(agent: Agent) -> bool:
    return AgentStatus(agent.status) in LIVE
