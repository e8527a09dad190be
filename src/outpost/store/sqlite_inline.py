"""SQLite connections whose small statements run on the event loop's thread.

aiosqlite hands every call of a statement (cursor, execute, fetch, close: about five of them) to its
worker thread and back, and each hand-over (a queue, a thread wake-up, a future set through the loop's
self-pipe) costs more CPU than SQLite takes for the statement itself: 36 % of a job claim here. These
statements take microseconds, and they cannot wait on a lock held in this process (the process queues
its writers on an asyncio lock, `db.Database._writer`, and WAL readers never wait for writers), so they
run inline. What can take long still goes to the worker thread: a statement that carries or reads a
large value (blobs, log chunks) with its fetches, one that reads a whole table (marked with `long()`:
the scrape-time counts of every run), and every commit, which writes the transaction's pages
to the write-ahead log and can wait on the disk (a stalled write on the loop's thread stalls every
request: log appends of a megabyte took delivery lag p99 from 150 ms to 1.2 s before commits moved).
WAL checkpoints, which sync the database file, run on a thread of their own (`db.Database`), never
inside a commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVarTuple

import aiosqlite
from sqlalchemy import Select

# Statements naming these tables can read or delete values of up to hundreds of megabytes; an insert
# writes only what it carries (a running job's log append: a few kilobytes), so it is judged by that.
HEAVY_TABLES = ("blobs", "log_chunks")
HEAVY_VALUE = 64 * 1024
# A statement marked as reading a whole table, whose time grows with the installation's history.
LONG = "/* outpost:long */"

_Row = TypeVarTuple("_Row")


def long(statement: Select[*_Row]) -> Select[*_Row]:
    """Mark a statement that reads a whole table: on SQLite it runs on the worker thread, off the event loop."""
    return statement.prefix_with(LONG)


def _heavy(sql: object, params: object) -> bool:
    values: Sequence[Any] | Any = params
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, list | tuple) and any(
        isinstance(v, bytes | bytearray | memoryview | str) and len(v) > HEAVY_VALUE for v in values
    ):
        return True
    if not isinstance(sql, str):
        return False
    return LONG in sql or (sql.lstrip()[:6].upper() != "INSERT" and any(table in sql for table in HEAVY_TABLES))


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection that runs small calls inline (see the module's docstring)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._thread.daemon = True  # as SQLAlchemy does for its own aiosqlite connections
        self._heavy_statement = False  # the last execute's: its fetches follow it to the thread

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", "")
        if name in ("execute", "executemany"):
            self._heavy_statement = _heavy(args[0] if args else None, args[1] if len(args) > 1 else None)
        if name == "commit" or (
            self._heavy_statement and (name.startswith("fetch") or name in ("execute", "executemany"))
        ):
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def creator(database: str | Path, **kwargs: Any) -> Callable[[], Any]:
    """An `async_creator` for SQLAlchemy's aiosqlite dialect: connections opened as aiosqlite would,
    usable from both threads (never at once: every call is awaited before the next)."""

    def connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(str(database), check_same_thread=False, **kwargs)
        return connection

    async def create() -> InlineConnection:
        connection = InlineConnection(connector)
        await connection  # opens it, on the worker thread
        return connection

    return create
