"""A deadlock that PostgreSQL breaks by rolling one transaction back reaches callers as `Contention`
(HTTP 503, which agents and API clients retry), not as an internal error; the other transaction commits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, update

from outpost.errors import Contention
from outpost.store.db import Database
from outpost.store.tables import Setting
from tests.support import databases

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.skipif(not databases.is_postgres(), reason="SQLite serializes writers: no deadlock to break"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_deadlock_is_raised_as_contention_and_rolled_back(tmp_path: Path) -> None:
    db = Database(databases.new_database(tmp_path), pool_size=2)
    try:
        async with db.write() as s:
            s.add_all([Setting(key="a", value="0"), Setting(key="b", value="0")])
        both_hold_one = asyncio.Barrier(2)

        async def cross(first: str, second: str) -> str:
            async with db.write() as s:
                await s.execute(update(Setting).where(Setting.key == first).values(value=first))
                await both_hold_one.wait()
                await s.execute(update(Setting).where(Setting.key == second).values(value=first))
            return first

        results = await asyncio.gather(cross("a", "b"), cross("b", "a"), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["Contention", "str"]
        [winner] = [r for r in results if isinstance(r, str)]
        [lost] = [r for r in results if isinstance(r, Contention)]
        assert lost.status == 503 and "try again" in lost.detail
        async with db.read() as s:
            values = dict(
                (await s.execute(select(Setting.key, Setting.value).where(Setting.key.in_(["a", "b"])))).all()
            )
        assert values == {"a": winner, "b": winner}, "the winner's writes stand, the loser's are gone"
    finally:
        await db.dispose()
