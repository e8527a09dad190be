"""Idle agents' heartbeats, batched (outpost.server.pings) against a real database: the batch writes every
agent's time in one go, never moves a time backwards, keeps last-used-at of the tokens current, and keeps
what it could not write for the next flush."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from outpost.server.pings import PingBuffer
from outpost.store import agents, migrate, pools, users
from outpost.store.db import Database
from outpost.store.tables import Agent, AgentToken
from outpost.timeutil import utcnow
from tests.support import databases

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def fleet(db: Database, count: int) -> tuple[str, list[str]]:
    async with db.write() as s:
        org = await users.create_organization(s, "acme", "ops@example.com")
        user = await users.ensure_user(s, "ops@example.com")
        pool = await pools.create_pool(s, org.id, "private-net", True, [])
        token, _ = await pools.create_token(s, pool.id, "batch test", user.id)
        ids = []
        for i in range(count):
            agent, _ = await agents.register(
                s, token, name=f"a{i}", ip_address=None, hostname=None, version="test", capacity=1
            )
            ids.append(agent.id)
        return token.id, ids


async def pings_of(db: Database) -> dict[str, object]:
    async with db.read() as s:
        return {row.id: row.last_ping_at for row in (await s.execute(select(Agent.id, Agent.last_ping_at))).all()}


async def test_one_flush_writes_every_agents_ping_and_never_goes_back(tmp_path: Path) -> None:
    url = databases.new_database(tmp_path)
    migrate.upgrade(url)
    db = Database(url)
    try:
        token_id, ids = await fleet(db, 50)
        before = await pings_of(db)
        buffer = PingBuffer(db)
        later = utcnow() + timedelta(seconds=5)
        for agent_id in ids[:40]:
            buffer.record(agent_id, token_id, later)
        # An older ping than the stored one (a slow replica's batch) must not move the time backwards.
        buffer.record(ids[40], token_id, utcnow() - timedelta(hours=1))
        assert len(buffer) == 41
        await buffer.flush()
        assert len(buffer) == 0
        after = await pings_of(db)
        assert all(after[a] == later for a in ids[:40])
        assert after[ids[40]] == before[ids[40]], "an older ping left the newer time alone"
        assert all(after[a] == before[a] for a in ids[41:]), "agents that did not ping are untouched"
        async with db.read() as s:
            token = await s.get(AgentToken, token_id)
            assert token is not None and token.last_used_at is not None
    finally:
        await db.dispose()


async def test_a_failed_flush_keeps_the_pings_for_the_next(tmp_path: Path) -> None:
    url = databases.new_database(tmp_path)
    migrate.upgrade(url)
    db = Database(url)
    try:
        token_id, ids = await fleet(db, 2)
        buffer = PingBuffer(db)
        first = utcnow() + timedelta(seconds=5)
        buffer.record(ids[0], token_id, first)
        buffer.record(ids[1], token_id, first)

        # The write fails, as with a dropped connection.
        real_write = db.write

        def broken_write():  # type: ignore[no-untyped-def]
            raise RuntimeError("the database went away")

        db.write = broken_write  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            await buffer.flush()
        db.write = real_write  # type: ignore[method-assign]
        newer = first + timedelta(seconds=5)
        buffer.record(ids[1], token_id, newer)  # a newer ping meanwhile wins over the kept one
        assert len(buffer) == 2
        await buffer.flush()
        after = await pings_of(db)
        assert after[ids[0]] == first and after[ids[1]] == newer
    finally:
        await db.dispose()
