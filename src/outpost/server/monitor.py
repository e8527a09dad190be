"""Background duties: agent liveness, dead agents' jobs, run timeouts, and a safety sweep of the queue.

Each pass is a set of idempotent statements, so any number of replicas may run it at once. Timings
come from the server's settings (unknown after 30 s without a heartbeat, errored after a further 300 s).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import and_, or_, select

from outpost.domain.agents import AgentStatus
from outpost.domain.jobs import JobStatus, Phase
from outpost.errors import Contention
from outpost.server.context import Outpost
from outpost.store import agents as agents_store
from outpost.store import events
from outpost.store import jobs as jobs_store
from outpost.store import runs as runs_store
from outpost.store.tables import Agent, Job
from outpost.timeutil import utcnow

log = logging.getLogger("outpost.server.monitor")


class Monitor:
    def __init__(self, app: Outpost) -> None:
        self.app = app
        self.config = app.config

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Contention:
                log.info("monitor pass met a conflicting change (rolled back); trying again next tick")
            except Exception:
                log.exception("monitor pass failed; trying again next tick")
            await asyncio.sleep(self.config.monitor_interval)

    async def tick(self) -> None:
        await self.app.pings.flush()  # this process's batched heartbeats count before agents are judged
        await self.mark_unknown()
        await self.mark_errored()
        await self.requeue_unstarted()
        await self.enforce_timeouts()
        await self.sweep()

    async def mark_unknown(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.config.agent_unknown_after)
        async with self.app.db.write() as session:
            stale = (
                (
                    await session.execute(
                        select(Agent)
                        .where(
                            Agent.status.in_([AgentStatus.IDLE.value, AgentStatus.BUSY.value]),
                            Agent.last_ping_at < cutoff,
                        )
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            for agent in stale:
                agents_store.set_status(agent, AgentStatus.UNKNOWN)
                events.wake_agent(session, agent.id)  # no longer quiet (outpost.server.quiet), on any replica
                log.warning("agent %s (%s) is unknown: no heartbeat since %s", agent.id, agent.name, agent.last_ping_at)

    async def mark_errored(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.config.agent_errored_after)
        async with self.app.db.write() as session:
            dead = (
                (
                    await session.execute(
                        select(Agent)
                        .where(Agent.status == AgentStatus.UNKNOWN.value, Agent.status_changed_at < cutoff)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            for agent in dead:
                label = f"{agent.name} ({agent.id})" if agent.name else agent.id
                reason = f"Agent {label} stopped reporting and was declared errored."
                agents_store.set_status(agent, AgentStatus.ERRORED)
                events.wake_agent(session, agent.id)
                agent.exit_reason = reason
                log.warning("%s", reason)
                jobs = (
                    (
                        await session.execute(
                            select(Job).where(
                                Job.agent_id == agent.id,
                                Job.status.in_([JobStatus.ASSIGNED.value, JobStatus.RUNNING.value]),
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
                for job in jobs:
                    if job.status == JobStatus.ASSIGNED.value:
                        jobs_store.requeue(session, job)
                    else:
                        run = await runs_store.get(session, job.run_id, lock=True)
                        phase = "plan" if job.phase == Phase.PLAN.value else "apply"
                        await runs_store.error(session, run, f"The {phase} failed: {reason}")

    async def requeue_unstarted(self) -> None:
        """Jobs handed to an agent that went unknown before starting them go to another agent."""
        async with self.app.db.write() as session:
            jobs = (
                (
                    await session.execute(
                        select(Job)
                        .join(Agent, Agent.id == Job.agent_id)
                        .where(
                            Job.status == JobStatus.ASSIGNED.value,
                            Agent.status.in_(
                                [AgentStatus.UNKNOWN.value, AgentStatus.ERRORED.value, AgentStatus.EXITED.value]
                            ),
                        )
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            for job in jobs:
                log.warning("job %s requeued: its agent %s went away before starting it", job.id, job.agent_id)
                jobs_store.requeue(session, job)

    async def enforce_timeouts(self) -> None:
        """An overrun phase is canceled with its reason; its agent is told to kill terraform at once."""
        now = utcnow()
        plan_cutoff = now - timedelta(seconds=self.config.plan_timeout)
        apply_cutoff = now - timedelta(seconds=self.config.apply_timeout)
        async with self.app.db.write() as session:
            # Only overrun jobs are selected and locked: every replica runs this pass, and locking every
            # running job each time would hold up their log appends for nothing.
            overrun = (
                (
                    await session.execute(
                        select(Job)
                        .where(
                            Job.status == JobStatus.RUNNING.value,
                            or_(
                                and_(Job.phase == Phase.PLAN.value, Job.started_at < plan_cutoff),
                                and_(Job.phase == Phase.APPLY.value, Job.started_at < apply_cutoff),
                            ),
                        )
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            for job in overrun:
                limit = self.config.plan_timeout if job.phase == Phase.PLAN.value else self.config.apply_timeout
                run = await runs_store.get(session, job.run_id, lock=True)
                await runs_store.stop(
                    session, run, job, f"The {job.phase} exceeded its timeout of {limit:g} s and was canceled."
                )

    async def sweep(self) -> None:
        """Safety net: wake a waiter of every pool that has queued jobs (wakes only speed pickup up)."""
        pools = self.app.dispatcher.pools_with_waiters()
        if not pools:
            return
        async with self.app.db.read() as session:
            for pool_id in pools:
                depth = await jobs_store.queue_depth(session, pool_id)
                if depth:
                    self.app.dispatcher.wake_pool(pool_id, depth)
