"""SQLite connections (outpost.store.sqlite_inline, db.Database): small statements run on the event loop's
thread; large values and commits on aiosqlite's worker thread; checkpoints on a thread of their own, never
in a commit. Real SQLite files; PostgreSQL does not take this path."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import literal_column, select, text
from sqlalchemy.dialects import sqlite

from outpost.store import sqlite_inline
from outpost.store.db import Database

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_small_statements_run_inline_and_large_values_on_the_worker_thread(tmp_path: Path) -> None:
    connection = await sqlite_inline.creator(tmp_path / "t.db")()
    try:
        assert connection._connection is not None
        connection._connection.isolation_level = None  # transactions as Database runs them: explicit BEGIN
        connection._connection.create_function("thread_id", 0, threading.get_ident)
        here = threading.get_ident()

        async def thread_of(sql: str, params: tuple[object, ...] = ()) -> int:
            cursor = await connection.execute(sql, params)
            row = await cursor.fetchone()
            await cursor.close()
            assert row is not None
            return int(row[0])

        assert await thread_of("SELECT thread_id()") == here
        assert await thread_of("SELECT thread_id() WHERE length(?) > 0", (b"x" * 100,)) == here
        big = b"x" * (sqlite_inline.HEAVY_VALUE + 1)
        assert await thread_of("SELECT thread_id() WHERE length(?) > 0", (big,)) != here
        await connection.execute("CREATE TABLE blobs (data BLOB)")
        await connection.execute("INSERT INTO blobs VALUES (x'00')")
        assert await thread_of("SELECT thread_id() FROM blobs") != here
        # And back inline for the next small one.
        assert await thread_of("SELECT thread_id()") == here
        # A statement marked as reading a whole table (long()) goes to the thread, however small its result.
        marked = str(sqlite_inline.long(select(literal_column("thread_id()"))).compile(dialect=sqlite.dialect()))
        assert sqlite_inline.LONG in marked
        assert await thread_of(marked) != here
        assert await thread_of("SELECT thread_id()") == here

        # A commit writes the transaction to the log, which can wait on the disk: always on the thread.
        traced: list[tuple[str, int]] = []
        connection._connection.set_trace_callback(lambda sql: traced.append((sql, threading.get_ident())))
        # An insert carries only its own values: a small one (a log append) runs inline, a large one not.
        await connection.execute("BEGIN IMMEDIATE")
        await connection.execute("INSERT INTO blobs VALUES (x'01')")
        await connection.execute("INSERT INTO blobs VALUES (?)", (big,))
        await connection.execute("DELETE FROM blobs WHERE length(data) = 1")
        await connection.commit()
        assert [(sql.split(" (")[0], tid == here) for sql, tid in traced] == [
            ("BEGIN IMMEDIATE", True),
            ("INSERT INTO blobs VALUES", True),
            ("INSERT INTO blobs VALUES", False),
            ("DELETE FROM blobs WHERE length(data) = 1", False),
            ("COMMIT", False),
        ]
    finally:
        await connection.close()


async def test_commits_leave_the_log_to_the_checkpoint_thread(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = Database(f"sqlite:///{path}")
    try:
        async with db.write() as session:
            await session.execute(text("CREATE TABLE t (v TEXT)"))
        for _ in range(40):  # about 1200 pages: past SQLite's own autocheckpoint threshold of 1000
            async with db.write() as session:
                await session.execute(text("INSERT INTO t VALUES (:v)"), [{"v": "x" * 4000}] * 30)
        before = path.stat().st_size
        checkpoints = asyncio.create_task(db.run_checkpoints(interval=0.05))
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while path.stat().st_size <= 1000 * 4096:
                assert asyncio.get_running_loop().time() < deadline, "no checkpoint copied the log"
                await asyncio.sleep(0.05)
        finally:
            checkpoints.cancel()
        # The rows were in the log only: no commit copied them into the database file.
        assert before < 100 * 4096
    finally:
        await db.dispose()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (1200,)
