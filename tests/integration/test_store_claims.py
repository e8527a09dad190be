"""The job claim against a real database (SQLite, or PostgreSQL with OUTPOST_TEST_DATABASE): no job is claimed twice, capacity holds under races,
lost answers are redelivered with a fresh credential, and a finished job fences its credential off."""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from outpost.domain.agents import AgentStatus
from outpost.domain.jobs import JobOutcome, JobRight, JobStatus
from outpost.domain.runs import RunStatus
from outpost.errors import Forbidden, NotFound
from outpost.store import agents, configs, jobs, migrate, pools, runs, users, workspaces
from outpost.store.db import Database
from outpost.store.jobs import Claimed, JobFenced, Result
from outpost.store.runs import RunOptions
from outpost.store.tables import Agent, Job, Run
from outpost.store.workspaces import WorkspaceSettings
from tests.support import databases

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

LEASE = timedelta(minutes=5)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        content = b'resource "null_resource" "x" {}\n'
        info = tarfile.TarInfo("main.tf")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass
class World:
    db: Database
    pool_id: str
    agent_ids: list[str]
    capacity: dict[str, int]
    run_ids: list[str]
    job_ids: list[str] = field(default_factory=list)


async def build_world(tmp_path: Path, *, capacities: list[int], run_count: int) -> World:
    url = databases.new_database(tmp_path)
    migrate.upgrade(url)
    db = Database(url)
    try:
        async with db.write() as s:
            org = await users.create_organization(s, "acme", "ops@example.com")
            user = await users.ensure_user(s, "ops@example.com")
            pool = await pools.create_pool(s, org.id, "private-net", True, [])
            token, _ = await pools.create_token(s, pool.id, "claims test", user.id)
            agent_ids = []
            for i, capacity in enumerate(capacities):
                agent, _ = await agents.register(
                    s,
                    token,
                    name=f"agent-{i}",
                    ip_address="10.0.0.1",
                    hostname=f"host-{i}",
                    version="test",
                    capacity=capacity,
                )
                agent_ids.append(agent.id)
            ws = await workspaces.create(
                s, org.id, WorkspaceSettings(name="infra", execution_mode="agent", agent_pool_id=pool.id)
            )
            cv = await configs.create(s, ws, speculative=False, auto_queue_runs=False, source="tfe-api")
            await configs.upload(s, cv, config_archive())
            run_ids = [(await runs.create(s, ws, cv, RunOptions(plan_only=True))).run.id for _ in range(run_count)]
            pool_id = pool.id
        world = World(
            db=db,
            pool_id=pool_id,
            agent_ids=agent_ids,
            capacity=dict(zip(agent_ids, capacities, strict=True)),
            run_ids=run_ids,
        )
        async with db.read() as s:
            rows = (await s.execute(select(Job.id, Job.status, Job.run_id).where(Job.pool_id == pool_id))).all()
        assert len(rows) == run_count, "every plan-only run queues exactly one plan job"
        assert {r.status for r in rows} == ({JobStatus.QUEUED.value} if run_count else set())
        assert {r.run_id for r in rows} == set(run_ids)
    except BaseException:
        await db.dispose()
        raise
    world.job_ids = [r.id for r in rows]
    return world


async def claim_one(db: Database, agent_id: str) -> Claimed | None:
    async with db.write() as s:
        return await jobs.claim(s, agent_id, LEASE)


async def active_counts(db: Database, agent_ids: list[str]) -> dict[str, int]:
    async with db.read() as s:
        return {agent_id: await agents.active_job_count(s, agent_id) for agent_id in agent_ids}


async def finish_all(db: Database, claimed: list[Claimed]) -> None:
    async with db.write() as s:
        for c in claimed:
            job = await jobs.authenticate(s, c.job_id, c.token, JobRight.READ, lock=True)
            await jobs.start(s, job)
            await jobs.finish(s, job, *await jobs.run_and_phase(s, job), Result(outcome=JobOutcome.SUCCEEDED))


async def test_racing_claims_take_every_job_exactly_once(tmp_path: Path) -> None:
    """20 agents with room for every job claim concurrently, in loops, until the queue is empty: every job
    goes to exactly one agent."""
    world = await build_world(tmp_path, capacities=[1000] * 20, run_count=300)
    try:
        claims: list[tuple[str, Claimed]] = []

        async def loop(agent_id: str) -> None:
            while (claimed := await claim_one(world.db, agent_id)) is not None:
                claims.append((agent_id, claimed))

        await asyncio.gather(*(loop(agent_id) for agent_id in world.agent_ids))

        claimed_ids = [c.job_id for _, c in claims]
        duplicates = [job_id for job_id, n in Counter(claimed_ids).items() if n > 1]
        assert duplicates == []
        assert len(claimed_ids) == 300
        assert set(claimed_ids) == set(world.job_ids)
        assert len({c.token for _, c in claims}) == 300, "every claim gets its own credential"
        assert all(c.attempt == 1 and c.phase == "plan" for _, c in claims)
        assert len({agent_id for agent_id, _ in claims}) > 1, "the race had more than one winner"

        async with world.db.read() as s:
            rows = (await s.execute(select(Job.id, Job.status, Job.agent_id, Job.attempt))).all()
            assert await jobs.queue_depth(s, world.pool_id) == 0
        holder = {c.job_id: agent_id for agent_id, c in claims}
        assert len(rows) == 300
        for row in rows:
            assert row.status == JobStatus.ASSIGNED.value
            assert row.agent_id == holder[row.id], "the database names the agent that got the job"
            assert row.attempt == 1
        # Nothing is left: one more claim per agent finds nothing.
        assert await asyncio.gather(*(claim_one(world.db, a) for a in world.agent_ids)) == [None] * 20
    finally:
        await world.db.dispose()


async def test_capacity_holds_while_agents_race(tmp_path: Path) -> None:
    """Capacity 1 and 2; each agent fires capacity + 1 concurrent claims per round and finishes nothing
    until the round is checked: the claims beyond its capacity must come back empty."""
    job_count = 50
    capacities = [1, 2] * 5
    slots = sum(capacities)  # 15: rounds of 15, 15, 15, 5, then an empty one
    world = await build_world(tmp_path, capacities=capacities, run_count=job_count)
    try:
        all_claimed: list[Claimed] = []
        rounds = 0
        while True:
            rounds += 1
            assert rounds <= 10, "the queue should drain in 4 rounds"
            attempts = [agent_id for agent_id in world.agent_ids for _ in range(world.capacity[agent_id] + 1)]
            results = await asyncio.gather(*(claim_one(world.db, agent_id) for agent_id in attempts))
            won: dict[str, list[Claimed]] = {agent_id: [] for agent_id in world.agent_ids}
            for agent_id, claimed in zip(attempts, results, strict=True):
                if claimed is not None:
                    won[agent_id].append(claimed)
            round_claims = [c for cs in won.values() for c in cs]
            if not round_claims:
                break
            remaining_before = job_count - len(all_claimed)
            assert len(round_claims) == min(remaining_before, slots), "free slots are filled while jobs remain"
            active = await active_counts(world.db, world.agent_ids)
            for agent_id in world.agent_ids:
                assert len(won[agent_id]) <= world.capacity[agent_id]
                assert active[agent_id] == len(won[agent_id])
            if remaining_before >= slots:
                assert active == world.capacity, "with jobs left over, every agent is full"
            # Full agents, or an empty queue: nobody gets anything more, however hard it asks.
            extra = await asyncio.gather(*(claim_one(world.db, a) for a in world.agent_ids))
            assert extra == [None] * len(world.agent_ids)
            async with world.db.read() as s:
                statuses = {a.id: a.status for a in (await s.execute(select(Agent))).scalars()}
            for agent_id in world.agent_ids:
                expected = AgentStatus.BUSY if won[agent_id] else AgentStatus.IDLE
                assert statuses[agent_id] == expected.value
            await finish_all(world.db, round_claims)
            all_claimed += round_claims

        assert rounds == 5
        claimed_ids = [c.job_id for c in all_claimed]
        assert len(claimed_ids) == len(set(claimed_ids)) == job_count
        assert set(claimed_ids) == set(world.job_ids)
        async with world.db.read() as s:
            job_statuses = set((await s.execute(select(Job.status))).scalars())
            run_statuses = set((await s.execute(select(Run.status))).scalars())
            agent_statuses = set((await s.execute(select(Agent.status))).scalars())
        assert job_statuses == {JobStatus.FINISHED.value}
        assert run_statuses == {RunStatus.PLANNED_AND_FINISHED.value}
        assert agent_statuses == {AgentStatus.IDLE.value}, "an agent with no job left is idle again"
        assert await active_counts(world.db, world.agent_ids) == dict.fromkeys(world.agent_ids, 0)
    finally:
        await world.db.dispose()


async def test_redeliver_rotates_the_job_credential(tmp_path: Path) -> None:
    world = await build_world(tmp_path, capacities=[2, 2], run_count=2)
    db = world.db
    a, b = world.agent_ids
    try:
        first = await claim_one(db, a)
        assert first is not None
        async with db.read() as s:
            assert (await jobs.agent_jobs(s, a)).undelivered([]) == [first.job_id]
            assert (await jobs.agent_jobs(s, a)).undelivered([first.job_id]) == []
            assert (await jobs.agent_jobs(s, b)).undelivered([]) == []
            # The original credential works until the job is redelivered.
            assert (await jobs.authenticate(s, first.job_id, first.token, JobRight.READ)).id == first.job_id

        async with db.write() as s:
            assert await jobs.redeliver(s, first.job_id, b) is None, "only the holder gets a job redelivered"
            again = await jobs.redeliver(s, first.job_id, a)
        assert again is not None
        assert again.job_id == first.job_id
        assert again.attempt == first.attempt == 1, "a redelivery is the same claim, not a new attempt"
        assert again.token != first.token

        async with db.read() as s:
            with pytest.raises(NotFound):
                await jobs.authenticate(s, first.job_id, first.token, JobRight.READ)
            job = await jobs.authenticate(s, again.job_id, again.token, JobRight.READ)
            assert job.status == JobStatus.ASSIGNED.value
            assert job.agent_id == a

        # A started job is known to its agent: nothing is undelivered and it is not redelivered.
        async with db.write() as s:
            await jobs.start(s, await jobs.authenticate(s, again.job_id, again.token, JobRight.READ, lock=True))
        async with db.write() as s:
            assert (await jobs.agent_jobs(s, a)).undelivered([]) == []
            assert await jobs.redeliver(s, again.job_id, a) is None
        async with db.read() as s:
            assert (
                await jobs.authenticate(s, again.job_id, again.token, JobRight.READ)
            ).status == JobStatus.RUNNING.value
    finally:
        await db.dispose()


async def test_requeued_job_goes_to_another_agent(tmp_path: Path) -> None:
    world = await build_world(tmp_path, capacities=[1, 1], run_count=1)
    db = world.db
    a, b = world.agent_ids
    try:
        first = await claim_one(db, a)
        assert first is not None
        assert await claim_one(db, b) is None, "the only job is taken"

        async with db.write() as s:
            job = await s.get(Job, first.job_id)
            assert job is not None
            jobs.requeue(s, job)
        async with db.read() as s:
            assert await jobs.queue_depth(s, world.pool_id) == 1
            assert await agents.active_job_count(s, a) == 0
            with pytest.raises(NotFound):
                await jobs.authenticate(s, first.job_id, first.token, JobRight.READ)

        second = await claim_one(db, b)
        assert second is not None
        assert second.job_id == first.job_id
        assert second.attempt == 2, "every claim increments the attempt"
        assert second.token != first.token
        async with db.read() as s:
            job = await jobs.authenticate(s, second.job_id, second.token, JobRight.READ)
            assert job.agent_id == b
            assert job.status == JobStatus.ASSIGNED.value
            assert (await jobs.agent_jobs(s, a)).undelivered([]) == []
            assert (await jobs.agent_jobs(s, b)).undelivered([]) == [second.job_id]
        assert await claim_one(db, a) is None
    finally:
        await db.dispose()


async def test_requeue_unstarted_only_takes_back_assigned_jobs(tmp_path: Path) -> None:
    world = await build_world(tmp_path, capacities=[2, 1], run_count=2)
    db = world.db
    a, b = world.agent_ids
    try:
        started = await claim_one(db, a)
        waiting = await claim_one(db, a)
        assert started is not None and waiting is not None
        async with db.write() as s:
            await jobs.start(s, await jobs.authenticate(s, started.job_id, started.token, JobRight.READ, lock=True))
        async with db.write() as s:
            assert await jobs.requeue_unstarted(s, a) == 1
        taken = await claim_one(db, b)
        assert taken is not None
        assert taken.job_id == waiting.job_id
        async with db.read() as s:
            assert (
                await jobs.authenticate(s, started.job_id, started.token, JobRight.READ)
            ).status == JobStatus.RUNNING.value
    finally:
        await db.dispose()


async def test_an_agent_is_idle_again_only_when_its_last_job_ends(tmp_path: Path) -> None:
    world = await build_world(tmp_path, capacities=[2], run_count=2)
    db = world.db
    (a,) = world.agent_ids
    try:
        first, second = await claim_one(db, a), await claim_one(db, a)
        assert first is not None and second is not None
        for claimed, status_after in ((first, AgentStatus.BUSY), (second, AgentStatus.IDLE)):
            async with db.write() as s:
                job = await jobs.authenticate(s, claimed.job_id, claimed.token, JobRight.READ, lock=True)
                await jobs.start(s, job)
                await jobs.finish(s, job, *await jobs.run_and_phase(s, job), Result(outcome=JobOutcome.SUCCEEDED))
            async with db.read() as s:
                assert (await agents.get_agent(s, a)).status == status_after.value
    finally:
        await db.dispose()


async def test_finished_job_is_fenced(tmp_path: Path) -> None:
    world = await build_world(tmp_path, capacities=[1], run_count=1)
    db = world.db
    (a,) = world.agent_ids
    try:
        claimed = await claim_one(db, a)
        assert claimed is not None
        async with db.write() as s:
            job = await jobs.authenticate(s, claimed.job_id, claimed.token, JobRight.READ, lock=True)
            await jobs.start(s, job)
        async with db.write() as s:
            job = await jobs.authenticate(s, claimed.job_id, claimed.token, JobRight.READ, lock=True)
            run, phase = await jobs.run_and_phase(s, job)
            await jobs.finish(s, job, run, phase, Result(outcome=JobOutcome.SUCCEEDED, has_changes=True, additions=1))

        async with db.read() as s:
            with pytest.raises(JobFenced) as caught:
                await jobs.authenticate(s, claimed.job_id, claimed.token, JobRight.READ)
            # A wrong secret stays a plain 404, fenced or not.
            with pytest.raises(NotFound):
                await jobs.authenticate(s, claimed.job_id, "opj_wrong", JobRight.READ)
            run = await runs.get(s, claimed.run_id)
            plan = await runs.plan_of(s, claimed.run_id)
            agent = await agents.get_agent(s, a)
        assert caught.value.status == 403
        assert isinstance(caught.value, Forbidden)
        assert run.status == RunStatus.PLANNED_AND_FINISHED.value
        assert run.has_changes is True
        assert plan.resource_additions == 1
        assert plan.log_complete is True
        assert agent.status == AgentStatus.IDLE.value
        # The slot is free again, but there is nothing left to claim.
        assert await claim_one(db, a) is None
    finally:
        await db.dispose()
