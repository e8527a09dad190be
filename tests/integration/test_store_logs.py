"""Run logs against a real database (SQLite, or PostgreSQL with OUTPOST_TEST_DATABASE): idempotent appends at offsets, gaps refused with the server's
size, exact reads across chunk boundaries, and nothing appended once the log is complete."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from outpost.errors import RangeNotSatisfiable
from outpost.store import configs, logs, migrate, pools, runs, users, workspaces
from outpost.store.db import Database
from outpost.store.logs import LogGap
from outpost.store.runs import RunOptions
from outpost.store.tables import LogChunk, Plan
from outpost.store.workspaces import WorkspaceSettings
from tests.support import databases

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


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


async def plan_log(tmp_path: Path) -> tuple[Database, str]:
    """A database holding one queued plan-only run; the id of its plan, which is the plan's log id."""
    url = databases.new_database(tmp_path)
    migrate.upgrade(url)
    db = Database(url)
    try:
        async with db.write() as s:
            org = await users.create_organization(s, "acme", "ops@example.com")
            pool = await pools.create_pool(s, org.id, "private-net", True, [])
            ws = await workspaces.create(
                s, org.id, WorkspaceSettings(name="infra", execution_mode="agent", agent_pool_id=pool.id)
            )
            cv = await configs.create(s, ws, speculative=False, auto_queue_runs=False, source="tfe-api")
            await configs.upload(s, cv, config_archive())
            plan_id = (await runs.create(s, ws, cv, RunOptions(plan_only=True))).plan.id
    except BaseException:
        await db.dispose()
        raise
    assert logs.table_for(plan_id) is Plan
    return db, plan_id


async def append(db: Database, log_id: str, offset: int, data: bytes) -> int:
    async with db.write() as s:
        return await logs.append(s, log_id, offset, data)


async def read(db: Database, log_id: str, offset: int, limit: int) -> bytes:
    async with db.read() as s:
        return await logs.read(s, log_id, offset, limit)


async def chunks(db: Database, log_id: str) -> list[tuple[int, bytes]]:
    async with db.read() as s:
        rows = await s.execute(
            select(LogChunk.offset, LogChunk.data).where(LogChunk.log_id == log_id).order_by(LogChunk.offset)
        )
        return [(row.offset, row.data) for row in rows]


async def test_appends_are_idempotent_and_gaps_refused(tmp_path: Path) -> None:
    db, log_id = await plan_log(tmp_path)
    try:
        assert await read(db, log_id, 0, 100) == b""
        assert await append(db, log_id, 0, b"hello") == 5
        # A retry of the same bytes changes nothing.
        assert await append(db, log_id, 0, b"hello") == 5
        assert await append(db, log_id, 2, b"llo") == 5
        assert await append(db, log_id, 5, b"") == 5
        assert await chunks(db, log_id) == [(0, b"hello")]

        # Overlapping: only the bytes past the stored end are kept.
        assert await append(db, log_id, 3, b"lo, world") == 12
        assert await chunks(db, log_id) == [(0, b"hello"), (5, b", world")]
        assert await read(db, log_id, 0, 100) == b"hello, world"

        # A gap is refused and tells the client where to resume.
        with pytest.raises(LogGap) as caught:
            await append(db, log_id, 13, b"!")
        assert caught.value.size == 12
        assert caught.value.status == 416
        assert isinstance(caught.value, RangeNotSatisfiable)
        assert "12" in caught.value.detail
        assert await chunks(db, log_id) == [(0, b"hello"), (5, b", world")], "a refused append stores nothing"

        assert await append(db, log_id, 12, b"!\n") == 14
        async with db.read() as s:
            assert await logs.size(s, log_id) == 14
            assert await logs.read_all(s, log_id) == b"hello, world!\n"
            plan = await s.get(Plan, log_id)
            assert plan is not None
            assert plan.log_size == 14
            assert plan.log_complete is False

        async with db.write() as s:
            await logs.complete(s, log_id)
        # Once complete, appends are ignored, even those that would extend the log.
        assert await append(db, log_id, 14, b"late bytes") == 14
        assert await append(db, log_id, 10, b"ld!\nlate") == 14
        async with db.read() as s:
            assert await logs.size(s, log_id) == 14
            assert await logs.read_all(s, log_id) == b"hello, world!\n"
            plan = await s.get(Plan, log_id)
            assert plan is not None
            assert plan.log_complete is True
        # A gap is still a gap.
        with pytest.raises(LogGap):
            await append(db, log_id, 15, b"x")
    finally:
        await db.dispose()


async def test_reads_across_chunk_boundaries_match_the_bytes_sent(tmp_path: Path) -> None:
    db, log_id = await plan_log(tmp_path)
    rng = random.Random(20240601)
    reference = bytearray()
    try:
        # Build the log in uneven chunks, with retries and overlaps as a flaky network would produce them.
        while len(reference) < 4000:
            piece = rng.randbytes(rng.randint(1, 300))
            offset = len(reference)
            size = await append(db, log_id, offset, piece)
            reference += piece
            assert size == len(reference)
            if rng.random() < 0.3:
                # Resend from some earlier point with new bytes after the end.
                back = rng.randint(0, min(len(reference), 200))
                extra = rng.randbytes(rng.randint(0, 50))
                start = len(reference) - back
                assert await append(db, log_id, start, bytes(reference[start:]) + extra) == len(reference) + len(extra)
                reference += extra
        stored = await chunks(db, log_id)
        assert len(stored) > 15, "the log is spread over many chunks"
        # Chunks tile the log: each starts where the previous one ends.
        position = 0
        for chunk_offset, data in stored:
            assert chunk_offset == position
            assert data
            position += len(data)
        assert position == len(reference)

        total = len(reference)
        boundaries = [offset for offset, _ in stored]
        cases = [(0, total), (0, total + 1000), (total, 10), (total + 5, 10), (3, 0), (7, -1), (total - 1, 1)]
        cases += [(b, 1) for b in boundaries] + [(b - 1, 2) for b in boundaries[1:]]
        cases += [(rng.randint(0, total + 20), rng.randint(0, 900)) for _ in range(150)]
        async with db.read() as s:
            for offset, limit in cases:
                expected = bytes(reference[offset : offset + max(limit, 0)])
                got = await logs.read(s, log_id, offset, limit)
                assert got == expected, f"read({offset}, {limit})"
            assert await logs.read_all(s, log_id) == bytes(reference)
            count = (
                await s.execute(select(func.count()).select_from(LogChunk).where(LogChunk.log_id == log_id))
            ).scalar_one()
            assert count == len(stored)
    finally:
        await db.dispose()
