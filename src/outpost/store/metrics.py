"""What /metrics reports from the database, counted at scrape time (a few GROUP BY queries)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.jobs import JobStatus
from outpost.store import sqlite_inline
from outpost.store.tables import Agent, AgentPool, Job, Run, Workspace


@dataclass(frozen=True)
class PoolLabels:
    pool_id: str
    pool_name: str
    organization: str


@dataclass
class Snapshot:
    pools: list[PoolLabels] = field(default_factory=list)
    agents: dict[tuple[str, str], int] = field(default_factory=dict)  # (pool id, status) -> count
    queued: dict[str, int] = field(default_factory=dict)  # pool id -> queued jobs
    running: dict[str, int] = field(default_factory=dict)  # pool id -> assigned or running jobs
    runs: dict[tuple[str, str], int] = field(default_factory=dict)  # (organization, status) -> count


async def snapshot(session: AsyncSession) -> Snapshot:
    snap = Snapshot()
    for pool in (await session.execute(select(AgentPool.id, AgentPool.name, AgentPool.organization_id))).all():
        snap.pools.append(PoolLabels(pool.id, pool.name, pool.organization_id or ""))
    # Every agent that ever registered, and below every run: read off SQLite's event loop thread (a hundred
    # thousand of either take a tenth of a second).
    agents = sqlite_inline.long(select(Agent.pool_id, Agent.status, func.count()).group_by(Agent.pool_id, Agent.status))
    snap.agents = {(row[0], row[1]): row[2] for row in (await session.execute(agents)).all()}
    jobs = (
        select(Job.pool_id, Job.status, func.count())
        .where(Job.status.in_([JobStatus.QUEUED.value, JobStatus.ASSIGNED.value, JobStatus.RUNNING.value]))
        .group_by(Job.pool_id, Job.status)
    )
    for pool_id, status, count in (await session.execute(jobs)).all():
        target = snap.queued if status == JobStatus.QUEUED.value else snap.running
        target[pool_id] = target.get(pool_id, 0) + count
    runs = sqlite_inline.long(
        select(Workspace.organization_id, Run.status, func.count())
        .join(Workspace, Workspace.id == Run.workspace_id)
        .group_by(Workspace.organization_id, Run.status)
    )
    snap.runs = {(row[0], row[1]): row[2] for row in (await session.execute(runs)).all()}
    return snap
