"""A job handed to a waiting long-poll inside the transaction that queued it (outpost.server.context),
against a real database (SQLite, or PostgreSQL with OUTPOST_TEST_DATABASE): delivered once committed,
undone with a rollback, passed on when the waiting agent may no longer work, left to the ordinary wake
when nothing could be claimed. Over the real agent protocol: the poll answers with the handed job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from outpost.admin import bootstrap
from outpost.agent.client import Client
from outpost.api_client import OutpostAPI
from outpost.config import ServerConfig
from outpost.domain.jobs import JobStatus
from outpost.errors import Forbidden
from outpost.server.context import Outpost
from outpost.server.dispatch import Dispatcher, Hand, Waiter
from outpost.server.pings import PingBuffer
from outpost.store import configs, jobs, runs
from outpost.store.runs import RunOptions
from outpost.store.tables import ConfigurationVersion, Job, Workspace
from tests.conftest import EXAMPLES
from tests.integration.test_store_claims import LEASE, World, build_world
from tests.support.processes import Server, start_server

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

METRICS_TOKEN = "handoff-metrics-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def outpost(tmp_path: Path, capacities: list[int]) -> AsyncIterator[tuple[Outpost, World]]:
    world = await build_world(tmp_path, capacities=capacities, run_count=0)
    app = Outpost(config=ServerConfig(), db=world.db, dispatcher=Dispatcher(), pings=PingBuffer(world.db))
    app.attach()
    try:
        yield app, world
    finally:
        await world.db.dispose()


def claiming(agent_id: str) -> Callable[[Any], Awaitable[list[jobs.Claimed] | None]]:
    """What a waiting poll hands the transaction: a claim for its agent."""

    async def hand(session: Any) -> list[jobs.Claimed] | None:
        claimed = await jobs.claim(session, agent_id, LEASE)
        return None if claimed is None else [claimed]

    return hand


@asynccontextmanager
async def polls(app: Outpost, world: World, *agents: tuple[str, Hand]) -> AsyncIterator[list[Waiter]]:
    """Long-polls of these agents waiting in the pool (inside `wait`: only those are handed jobs)."""
    with ExitStack() as stack:
        waiters = [
            stack.enter_context(app.dispatcher.waiting(world.pool_id, agent_id, for_jobs=True, hand=hand))
            for agent_id, hand in agents
        ]
        waits = [asyncio.ensure_future(w.wait(30)) for w in waiters]
        await asyncio.sleep(0)
        try:
            yield waiters
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


async def queue_run(session: Any) -> str:
    ws = (await session.execute(select(Workspace).where(Workspace.name == "infra"))).scalar_one()
    cv = (
        await session.execute(select(ConfigurationVersion).where(ConfigurationVersion.workspace_id == ws.id))
    ).scalar_one()
    return str((await runs.create(session, ws, await configs.get(session, cv.id), RunOptions(plan_only=True))).run.id)


async def job_of(app: Outpost, run_id: str) -> Job:
    async with app.db.read() as s:
        return (await s.execute(select(Job).where(Job.run_id == run_id))).scalar_one()


async def test_job_is_handed_to_the_first_waiter_in_the_queuing_transaction(tmp_path: Path) -> None:
    async with outpost(tmp_path, [1, 1]) as (app, world):
        first_id, second_id = world.agent_ids
        async with polls(app, world, (first_id, claiming(first_id)), (second_id, claiming(second_id))) as (
            first,
            second,
        ):
            async with app.db.write() as s:
                run_id = await queue_run(s)
                assert not first.event.is_set(), "delivered only once committed"
            assert (first.reason, second.event.is_set()) == ("handed", False)
            (claimed,) = first.answer
            job = await job_of(app, run_id)
            assert (claimed.job_id, job.status, job.agent_id) == (job.id, JobStatus.ASSIGNED.value, first_id)


async def test_rolled_back_handoff_claims_nothing_and_the_polls_wait_on_in_their_order(tmp_path: Path) -> None:
    async with outpost(tmp_path, [1, 1]) as (app, world):
        first_id, second_id = world.agent_ids

        async def broken(session: Any) -> None:
            raise RuntimeError("the database connection was lost")

        async with polls(app, world, (first_id, claiming(first_id)), (second_id, broken)) as (first, second):
            with pytest.raises(RuntimeError):
                async with app.db.write() as s:
                    await queue_run(s)
                    await queue_run(s)  # the first is claimed for `first`, then `second`'s claim fails
            assert not first.event.is_set() and not second.event.is_set()
            async with app.db.read() as s:
                assert (await s.execute(select(Job.id))).all() == []
            assert [app.dispatcher.take(world.pool_id), app.dispatcher.take(world.pool_id)] == [first, second]
            app.dispatcher.put_back(second)
            app.dispatcher.put_back(first)

            async with app.db.write() as s:
                run_id = await queue_run(s)
            assert first.reason == "handed" and (await job_of(app, run_id)).agent_id == first_id


async def test_agent_that_may_no_longer_work_is_woken_and_the_job_goes_to_the_next(tmp_path: Path) -> None:
    async with outpost(tmp_path, [1, 1]) as (app, world):
        gone_id, next_id = world.agent_ids

        async def refused(session: Any) -> None:
            raise Forbidden("The agent's pool token was revoked.")

        async with polls(app, world, (gone_id, refused), (next_id, claiming(next_id))) as (gone, following):
            async with app.db.write() as s:
                run_id = await queue_run(s)
            assert gone.reason == "agent", "woken to hear why from its own look"
            assert following.reason == "handed" and (await job_of(app, run_id)).agent_id == next_id


async def test_nothing_claimed_leaves_the_ordinary_wake(tmp_path: Path) -> None:
    async with outpost(tmp_path, [1, 1]) as (app, world):
        busy_id, other_id = world.agent_ids

        async def nothing(session: Any) -> None:
            return None  # e.g. the agent's row is locked by another transaction

        async with polls(app, world, (busy_id, nothing), (other_id, claiming(other_id))) as (busy, other):
            async with app.db.write() as s:
                run_id = await queue_run(s)
            assert busy.reason == "job", "woken, to claim for itself"
            assert not other.event.is_set(), "one wake for one job"
            assert (await job_of(app, run_id)).status == JobStatus.QUEUED.value


# Over the real agent protocol: the poll's own `hand` (outpost.server.agent_api.routes).


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Any:
    srv = start_server(
        tmp_path_factory.mktemp("handoff"), tools_dir, "--no-builtin-agent", "--metrics-token", METRICS_TOKEN
    )
    yield srv
    srv.proc.stop()


def dispatched(server: Server, pool_id: str) -> dict[str, float]:
    answer = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    answer.raise_for_status()
    return {
        sample.labels["way"]: sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "outpost_jobs_dispatched_total" and sample.labels["pool"] == pool_id
    }


def test_waiting_poll_answers_with_the_job_handed_to_it(metrics_server: Server) -> None:
    name = f"handoff-{id(metrics_server)}"
    api = OutpostAPI(metrics_server.url, asyncio.run(bootstrap(metrics_server.db_url, name, f"{name}@example.com")))
    pool_id = api.create_pool(name, "pool")["id"]
    _, pool_token = api.create_agent_token(pool_id, "handoff test")
    ws = api.create_workspace(name, "handed", execution_mode="agent", agent_pool_id=pool_id)
    cv = api.upload_configuration(ws["id"], EXAMPLES / "hello")

    async def scenario() -> str:
        client = Client(metrics_server.url)
        try:
            await client.register(pool_token, "waiting", 1)
            await client.poll(1, [], {}, 0)  # known to the server, nothing to claim
            poll = asyncio.ensure_future(client.poll(1, [], {}, 10))
            await asyncio.sleep(0.5)  # waiting in the long-poll
            run = await asyncio.to_thread(api.create_run, ws["id"], cv)
            (job,) = (await asyncio.wait_for(poll, 10))["jobs"]
            assert job["run_id"] == run["id"]
            await client.start(job["id"], job["token"])
            return str(run["id"])
        finally:
            await client.close()

    try:
        run_id = asyncio.run(scenario())
        assert dispatched(metrics_server, pool_id) == {"handed": 1.0}
        assert api.run(run_id)["attributes"]["status"] == "planning"
    finally:
        api.close()
