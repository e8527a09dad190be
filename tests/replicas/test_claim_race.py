"""Exactly once under a race: 50 agents speaking the real agent protocol (`outpost.agent.client.Client`,
real HTTP) against two replicas on PostgreSQL (one replica on SQLite), while 2000 jobs are queued in
batches from a third process. Every job is claimed once, by one agent, and none is lost.

The jobs are plan-only runs created through the store; the simulated agents start and finish them
without running terraform, so the test measures the claim, not terraform.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from outpost.agent.client import Backoff, Client
from outpost.domain.jobs import JobStatus
from outpost.domain.runs import RunStatus
from outpost.store import configs, notify, pools, runs, users, workspaces
from outpost.store.db import Database
from outpost.store.runs import RunOptions
from outpost.store.tables import Agent, Job, Run, Workspace
from outpost.store.workspaces import WorkspaceSettings
from tests.replicas.conftest import Replicas, replica_count, tiny_archive

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("heavy")]

AGENTS = 50
JOBS = 2000
WORKSPACES = 20
BATCH = 100
SERVER_ARGS = ("--no-builtin-agent", "--long-poll-timeout", "3", "--monitor-interval", "0.5")


def _database(url: str) -> Database:
    """The test process queues jobs like a third replica: on PostgreSQL its commits NOTIFY the others."""
    db = Database(url, pool_size=2)
    if not db.is_sqlite:

        async def announce(session: Any) -> None:
            await notify.send(session, notify.encode("race-test", session.info))

        db.before_commit = announce
    return db


async def _setup(db: Database, org: str) -> tuple[str, str, list[str], list[str]]:
    """A pool and its token, and uploaded configurations for the workspaces the jobs run in."""
    async with db.write() as s:
        user = await users.ensure_user(s, f"owner-{org}@example.com")
        pool = await pools.create_pool(s, org, "race", True, [])
        _, pool_token = await pools.create_token(s, pool.id, "race", user.id)
        ws_ids, cv_ids = [], []
        for i in range(WORKSPACES):
            ws = await workspaces.create(
                s, org, WorkspaceSettings(name=f"ws-{i}", execution_mode="agent", agent_pool_id=pool.id)
            )
            cv = await configs.create(s, ws, speculative=False, auto_queue_runs=False, source="tfe-api")
            await configs.upload(s, cv, tiny_archive())
            ws_ids.append(ws.id)
            cv_ids.append(cv.id)
        return pool.id, pool_token, ws_ids, cv_ids


async def _queue(db: Database, ws_ids: list[str], cv_ids: list[str], started: asyncio.Event) -> list[str]:
    await started.wait()
    run_ids: list[str] = []
    for batch in range(JOBS // BATCH):
        async with db.write() as s:
            for n in range(BATCH):
                i = (batch * BATCH + n) % WORKSPACES
                ws = await s.get(Workspace, ws_ids[i], with_for_update=True)
                cv = await configs.get(s, cv_ids[i])
                assert ws is not None
                run_ids.append((await runs.create(s, ws, cv, RunOptions(plan_only=True))).run.id)
        await asyncio.sleep(0)  # let the agents in between batches
    return run_ids


class Racer:
    """One simulated agent: register, then poll, start and finish whatever it is given."""

    def __init__(self, index: int, address: str) -> None:
        self.name = f"racer-{index}"
        self.address = address
        self.client = Client(address, backoff=Backoff(base=0.05, cap=0.5))
        self.received: list[str] = []

    async def run(
        self, pool_token: str, registered: asyncio.Event, all_done: asyncio.Event, tally: Counter[str]
    ) -> None:
        heartbeats: asyncio.Task[None] | None = None
        try:
            registration = await self.client.register(pool_token, self.name, 1)
            heartbeats = asyncio.create_task(self._heartbeats(registration.heartbeat_interval))
            tally["registered"] += 1
            if tally["registered"] == AGENTS:
                registered.set()
            while not all_done.is_set():
                # A real long-poll: an idle agent is woken (in-process, or by NOTIFY from another replica).
                answer = await self.client.poll(1, [], {}, registration.long_poll_timeout)
                for job in answer["jobs"]:
                    self.received.append(job["id"])
                    await self.client.start(job["id"], job["token"])
                    await self.client.finish(
                        job["id"], job["token"], {"outcome": "succeeded", "log_size": 0, "has_changes": False}
                    )
                    tally["finished"] += 1
                    if tally["finished"] >= JOBS:
                        all_done.set()
            await self.client.deregister()
        finally:
            if heartbeats is not None:
                heartbeats.cancel()
                await asyncio.gather(heartbeats, return_exceptions=True)
            await self.client.close()

    async def _heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.client.heartbeat([])


async def _race(replicas: Replicas, org: str) -> tuple[list[Racer], list[str], str, float]:
    db = _database(replicas.db_url)
    try:
        pool_id, pool_token, ws_ids, cv_ids = await _setup(db, org)
        urls = [s.url for s in replicas.servers]
        racers = [Racer(i, urls[i % len(urls)]) for i in range(AGENTS)]
        registered, all_done, tally = asyncio.Event(), asyncio.Event(), Counter[str]()
        began = time.monotonic()
        agents = [asyncio.create_task(r.run(pool_token, registered, all_done, tally)) for r in racers]
        queued = asyncio.create_task(_queue(db, ws_ids, cv_ids, registered))
        try:
            await asyncio.wait_for(asyncio.gather(queued, *agents), timeout=800)
        except TimeoutError:
            pytest.fail(f"not every job finished in time: {dict(tally)}")
        return racers, queued.result(), pool_id, time.monotonic() - began
    finally:
        await db.dispose()


async def _stored(url: str, pool_id: str, run_ids: list[str]) -> tuple[list[Any], Counter[str], dict[str, str]]:
    db = Database(url, pool_size=1)
    try:
        async with db.read() as s:
            jobs = (
                await s.execute(select(Job.id, Job.status, Job.attempt, Job.agent_id).where(Job.pool_id == pool_id))
            ).all()
            statuses = Counter((await s.execute(select(Run.status).where(Run.id.in_(run_ids)))).scalars())
            names = {
                a.id: str(a.name) for a in (await s.execute(select(Agent).where(Agent.pool_id == pool_id))).scalars()
            }
        return list(jobs), statuses, names
    finally:
        await db.dispose()


@pytest.mark.timeout(900)  # 3 to 7 minutes on a shared 2-core machine (the servers are CPU-bound)
def test_every_job_is_claimed_exactly_once_by_50_agents_across_replicas(make_replicas: Any) -> None:
    replicas: Replicas = make_replicas(replica_count(), *SERVER_ARGS, env={"OUTPOST_DATABASE_POOL_SIZE": "5"})
    org, _ = replicas.organization()
    racers, run_ids, pool_id, elapsed = asyncio.run(_race(replicas, org))

    received = Counter(job for r in racers for job in r.received)
    assert len(received) == JOBS, "every job reached an agent"
    assert set(received.values()) == {1}, f"jobs delivered twice: {[j for j, n in received.items() if n > 1][:5]}"

    jobs, statuses, names = asyncio.run(_stored(replicas.db_url, pool_id, run_ids))
    holder = {job: r.name for r in racers for job in r.received}
    assert len(jobs) == JOBS
    assert {j.id for j in jobs} == set(received)
    assert {j.status for j in jobs} == {JobStatus.FINISHED.value}
    assert {j.attempt for j in jobs} == {1}, "each job was claimed once (the attempt counts claims)"
    assert all(names[j.agent_id] == holder[j.id] for j in jobs), "the database names the agent that ran it"
    assert statuses == Counter({RunStatus.PLANNED_AND_FINISHED.value: JOBS})
    by_replica = Counter(r.address for r in racers for _ in r.received)
    assert len(by_replica) == len(replicas.servers), f"every replica handed out jobs: {by_replica}"
    busiest = Counter(r.name for r in racers for _ in r.received)
    print(
        f"{JOBS} jobs, {AGENTS} agents, {len(replicas.servers)} replica(s): {elapsed:.1f} s; by replica {dict(by_replica)}; "
        f"jobs per agent {min(busiest.values())}..{max(busiest.values())}"
    )
