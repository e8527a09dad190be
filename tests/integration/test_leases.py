"""Leases and fencing over the real agent protocol: the agent protocol client against a real server with
short liveness timings, no terraform. A job whose agent went silent before starting it goes to another
agent; once the server gives up on a job, everything its old agent sends for it is refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from outpost.admin import bootstrap
from outpost.agent.client import Backoff, Client, JobGone
from outpost.agent.exitcodes import ExitCode
from outpost.api_client import OutpostAPI
from outpost.errors import AgentFatal
from tests.conftest import EXAMPLES
from tests.support.processes import Server, start_server, wait_until

pytestmark = pytest.mark.integration

UNKNOWN_AFTER, ERRORED_AFTER = 1.5, 2.0
FLAGS = [
    "--no-builtin-agent",
    "--agent-unknown-after",
    str(UNKNOWN_AFTER),
    "--agent-errored-after",
    str(ERRORED_AFTER),
    "--monitor-interval",
    "0.2",
    "--long-poll-timeout",
    "10",
]


@pytest.fixture(scope="module")
def lease_server(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("leases"), tools_dir, *FLAGS)
    yield srv
    srv.proc.stop()


class World:
    def __init__(self, server: Server) -> None:
        name = f"leases-{os.getpid()}-{time.monotonic_ns()}"
        self.server = server
        self.org = name
        self.api = OutpostAPI(server.url, asyncio.run(bootstrap(server.db_url, name, f"{name}@example.com")))
        self.pool_id = pool_id = self.api.create_pool(name, "pool")["id"]
        _, self.pool_token = self.api.create_agent_token(pool_id, "lease test")
        ws = self.api.create_workspace(name, "leased", execution_mode="agent", agent_pool_id=pool_id)
        self.run_id = self.api.create_run(ws["id"], self.api.upload_configuration(ws["id"], EXAMPLES / "hello"))["id"]

    def status(self) -> str:
        return str(self.api.run(self.run_id)["attributes"]["status"])

    def agent(self, agent_id: str) -> dict[str, Any]:
        """The agent's attributes as the API lists them."""
        (found,) = [a for a in self.api.agents(self.pool_id) if a["id"] == agent_id]
        return dict(found["attributes"])


@pytest.fixture
def world(lease_server: Server) -> Iterator[World]:
    w = World(lease_server)
    yield w
    w.api.close()


@asynccontextmanager
async def agent(world: World, name: str, *, heartbeats: bool) -> AsyncIterator[Client]:
    """A registered agent, heartbeating in the background if asked (as `outpost agent` does)."""
    client = Client(world.server.url, backoff=Backoff(base=0.05, cap=0.2))
    await client.register(world.pool_token, name, 1)
    beat = asyncio.create_task(_beat(client)) if heartbeats else None
    try:
        yield client
    finally:
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, AgentFatal):
                await beat
        await client.close()


async def _beat(client: Client) -> None:
    while True:
        await client.heartbeat([])
        await asyncio.sleep(0.3)


async def _one_job(client: Client, wait: float = 10) -> dict[str, Any]:
    answer = await client.poll(1, [], {}, wait)
    (job,) = answer["jobs"]
    return dict(job)


def test_unstarted_job_of_a_silent_agent_goes_to_another_agent(world: World) -> None:
    async def scenario() -> None:
        async with (
            agent(world, "silent", heartbeats=False) as silent,
            agent(world, "steady", heartbeats=True) as steady,
        ):
            job = await _one_job(silent)
            # The silent agent never starts the job; the steady one long-polls and is handed it once the
            # silent agent is unknown, with a credential of its own.
            started = time.monotonic()
            again = await _one_job(steady, wait=UNKNOWN_AFTER + 5)
            assert again["id"] == job["id"] and again["token"] != job["token"]
            assert time.monotonic() - started < UNKNOWN_AFTER + 3
            with pytest.raises(JobGone):
                await silent.start(job["id"], job["token"])  # fenced: the claim is no longer its
            await steady.start(again["id"], again["token"])
            assert world.status() == "planning"

    asyncio.run(scenario())


def test_idle_heartbeats_keep_the_agent_and_its_token_current(world: World) -> None:
    """Idle agents' heartbeats are answered from a read and their times written in batches: the agent
    must still never look silent, its last ping must move, and its token must show it was used."""

    async def scenario() -> None:
        client = Client(world.server.url, backoff=Backoff(base=0.05, cap=0.2))
        registration = await client.register(world.pool_token, "idle", 1)
        beat = asyncio.create_task(_beat(client))
        try:
            first_ping = world.agent(registration.agent_id)["last-ping-at"]
            seen: set[str] = set()
            deadline = time.monotonic() + UNKNOWN_AFTER * 3
            while time.monotonic() < deadline:
                seen.add(world.agent(registration.agent_id)["status"])
                await asyncio.sleep(0.2)
            assert seen == {"idle"}, f"an idle, heartbeating agent looked {seen}"
            assert world.agent(registration.agent_id)["last-ping-at"] > first_ping
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await client.close()
        tokens = world.api.request("GET", f"/agent-pools/{world.pool_id}/authentication-tokens")["data"]
        assert tokens and all(t["attributes"]["last-used-at"] for t in tokens)

    asyncio.run(scenario())


def test_quiet_agents_still_hear_every_change(world: World) -> None:
    """An idle agent's heartbeats are answered from memory once a read found nothing to tell it
    (outpost.server.quiet): its own deregistration, being declared errored, a revoked token and a deleted
    pool must still reach it at its next heartbeat."""

    async def quiet_client(pool_token: str, name: str) -> Client:
        client = Client(world.server.url, backoff=Backoff(base=0.05, cap=0.2))
        await client.register(pool_token, name, 1)
        for _ in range(3):  # the first is read; the next ones are answered from memory
            assert (await client.heartbeat([]))["action"] == "continue"
        return client

    async def refused(client: Client) -> ExitCode:
        with pytest.raises(AgentFatal) as exc:
            await client.heartbeat([])
        await client.close()
        return exc.value.exit_code

    async def scenario() -> None:
        # Deregistered: a late heartbeat with its session is refused.
        leaving = await quiet_client(world.pool_token, "leaving")
        late = Client(world.server.url, backoff=Backoff(base=0.05, cap=0.2))
        late.session_token = leaving.session_token
        await leaving.deregister()
        await leaving.close()
        assert await refused(late) == ExitCode.SESSION_ENDED

        # Silent past unknown-after and errored-after: the monitor's verdict reaches it.
        silent = await quiet_client(world.pool_token, "silent")
        await asyncio.sleep(UNKNOWN_AFTER + ERRORED_AFTER + 1.5)
        assert await refused(silent) == ExitCode.AGENT_ERRORED

        # Its pool token revoked.
        revoked = await quiet_client(world.pool_token, "revoked")
        (token,) = world.api.request("GET", f"/agent-pools/{world.pool_id}/authentication-tokens")["data"]
        world.api.request("DELETE", f"/authentication-tokens/{token['id']}")
        assert await refused(revoked) == ExitCode.TOKEN_REVOKED

        # Its pool deleted.
        org = world.api.request("GET", f"/agent-pools/{world.pool_id}")["data"]["relationships"]["organization"]
        spare = world.api.create_pool(org["data"]["id"], "spare")
        _, spare_token = world.api.create_agent_token(spare["id"], "spare")
        orphan = await quiet_client(spare_token, "orphan")
        world.api.request("DELETE", f"/agent-pools/{spare['id']}")
        assert await refused(orphan) == ExitCode.SESSION_ENDED

    asyncio.run(scenario())


def test_a_quiet_agent_whose_answer_was_lost_gets_its_job_again(world: World) -> None:
    """A claimed job whose answer never reached the agent is delivered again at its next poll, also after
    the agent's polls were being answered as quiet ones (outpost.server.quiet): the claim ends that."""

    async def scenario() -> None:
        client = Client(world.server.url, backoff=Backoff(base=0.05, cap=0.2))
        await client.register(world.pool_token, "forgetful", 1)
        try:
            for _ in range(3):  # polls that take nothing: read once, then quiet
                assert (await client.poll(0, [], {}, 0))["jobs"] == []
            (lost,) = (await client.poll(1, [], {}, 5))["jobs"]  # the answer "never arrives"
            (again,) = (await client.poll(1, [], {}, 5))["jobs"]
            assert again["id"] == lost["id"] and again["token"] != lost["token"]
            await client.start(again["id"], again["token"])
            assert world.status() == "planning"
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_quiet_poll_hears_of_a_job_queued_right_after_it_found_none(world: World) -> None:
    """An idle agent's poll that trusts a recent read's "nothing queued" (Dispatcher.known_empty) still
    takes a job queued a moment later, when no poll was waiting to be woken for it."""
    pool_id = world.api.create_pool(world.org, "empty-pool")["id"]
    _, pool_token = world.api.create_agent_token(pool_id, "empty pool")
    ws = world.api.create_workspace(world.org, "empty-pool-ws", execution_mode="agent", agent_pool_id=pool_id)
    cv = world.api.upload_configuration(ws["id"], EXAMPLES / "hello")

    async def scenario() -> None:
        client = Client(world.server.url, backoff=Backoff(base=0.05, cap=0.2))
        await client.register(pool_token, "idle", 1)
        try:
            for _ in range(3):  # read once, then quiet, then answered from what is known
                assert (await client.poll(1, [], {}, 0))["jobs"] == []
            run_id = await asyncio.to_thread(lambda: world.api.create_run(ws["id"], cv)["id"])
            (job,) = (await client.poll(1, [], {}, 0))["jobs"]
            assert job["run_id"] == run_id
        finally:
            await client.close()

    asyncio.run(scenario())


def test_job_of_an_errored_agent_is_fenced(world: World) -> None:
    async def scenario() -> None:
        async with agent(world, "zombie", heartbeats=True) as zombie:
            job = await _one_job(zombie)
            await zombie.start(job["id"], job["token"])
            size = (await zombie.append_log(job["id"], job["token"], 0, b"planning...\n")).size
            assert size == 12
        # The heartbeats stopped with the context: unknown, then errored, and its plan errors.
        wait_until(lambda: world.status() == "errored", UNKNOWN_AFTER + ERRORED_AFTER + 5, what="errored run")
        run = world.api.run(world.run_id)
        assert "zombie" in run["attributes"]["error-message"]
        log = world.api.read_log(run, "plan")
        assert log.startswith("planning...\n") and "zombie" in log

        # The zombie wakes up: nothing it sends for the job is taken, and it is told to exit.
        late = Client(world.server.url, backoff=Backoff(base=0.05, cap=0.2))
        late.session_token = zombie.session_token
        try:
            with pytest.raises(JobGone):
                await late.append_log(job["id"], job["token"], 12, b"late bytes\n")
            with pytest.raises(JobGone):
                await late.upload(job["id"], job["token"], "state", b'{"version": 4, "serial": 9}')
            with pytest.raises(AgentFatal) as exc:
                await late.heartbeat([job["id"]])
            assert exc.value.exit_code == ExitCode.AGENT_ERRORED
        finally:
            await late.close()
        assert "late bytes" not in world.api.read_log(world.api.run(world.run_id), "plan")

    asyncio.run(scenario())


def test_a_busy_agents_heartbeats_keep_it_current_and_hear_a_revocation(world: World) -> None:
    """A heartbeat that names running jobs goes straight to its write (outpost.server.agent_api): the agent
    must stay busy past unknown-after with its last ping moving, and a revoked token must still be refused
    at the next heartbeat."""

    async def scenario() -> None:
        client = Client(world.server.url, backoff=Backoff(base=0.05, cap=0.2))
        registration = await client.register(world.pool_token, "busy", 1)
        try:
            job = await _one_job(client)
            await client.start(job["id"], job["token"])
            first_ping = world.agent(registration.agent_id)["last-ping-at"]
            seen: set[str] = set()
            deadline = time.monotonic() + UNKNOWN_AFTER * 3
            while time.monotonic() < deadline:
                assert (await client.heartbeat([job["id"]]))["action"] == "continue"
                seen.add(world.agent(registration.agent_id)["status"])
                await asyncio.sleep(0.3)
            assert seen == {"busy"}, f"a busy, heartbeating agent looked {seen}"
            assert world.agent(registration.agent_id)["last-ping-at"] > first_ping
            assert world.status() == "planning"
            (token,) = world.api.request("GET", f"/agent-pools/{world.pool_id}/authentication-tokens")["data"]
            world.api.request("DELETE", f"/authentication-tokens/{token['id']}")
            with pytest.raises(AgentFatal) as exc:
                await client.heartbeat([job["id"]])
            assert exc.value.exit_code == ExitCode.TOKEN_REVOKED
        finally:
            await client.close()

    asyncio.run(scenario())
