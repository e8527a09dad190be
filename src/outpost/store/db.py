"""Engines and transactions.

`Database.write()` opens a transaction meant to change data; `Database.read()` one that only reads. On
SQLite a write transaction starts with BEGIN IMMEDIATE, so two writers queue on the database lock
instead of one failing when it upgrades from reading to writing. On PostgreSQL both are plain
READ COMMITTED transactions; correctness under concurrency comes from row locks and atomic statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from outpost.errors import ConfigError, Contention
from outpost.store import sqlite_inline

log = logging.getLogger("outpost.store.db")

_READ_ONLY = "outpost_read_only"
# PostgreSQL ended the transaction to resolve contention (a deadlock, a serialization failure, a lock
# wait cut short): it was rolled back whole, so the caller may simply try again.
_CONTENTION = {"40P01", "40001", "55P03"}


def is_contention(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _CONTENTION


def async_url(url: str) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"Unsupported database URL {parsed.render_as_string(hide_password=True)}: use sqlite:// or postgresql://"
    )


def sync_url(url: str) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"Unsupported database URL {parsed.render_as_string(hide_password=True)}: use sqlite:// or postgresql://"
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Checkpoints copy the WAL into the database file and sync it: not inside a commit, which runs on
        # the event loop's thread (sqlite_inline), but on a thread of their own (Database.run_checkpoints).
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        target = async_url(url)
        self.dialect = target.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        self._sqlite_path: str | None = None
        if self.dialect == "sqlite":
            self._sqlite_path = target.database or ":memory:"
            kwargs["async_creator"] = sqlite_inline.creator(self._sqlite_path, timeout=30)
            # The connection used last goes out first: its page cache still holds what the last
            # transaction touched, where one idle in the pool's queue since another connection wrote
            # must re-read its pages (statements of a job took a quarter longer handed round in turn).
            kwargs["pool_use_lifo"] = True
        else:
            # Transactions are short and a waiting long-poll holds no connection, so a modest pool serves
            # many agents; the overflow absorbs bursts. Pre-ping replaces connections a restart broke.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=30)
        self.engine = create_async_engine(target, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        # Called inside each write that recorded wake-ups, just before it commits (jobs handed to waiting
        # polls; NOTIFY on PostgreSQL).
        self.before_commit: Callable[[AsyncSession], Awaitable[None]] | None = None
        # Called with the session's info after each committed write (see outpost.store.events), and after
        # each write that recorded something there and then failed.
        self.on_commit: Callable[[dict[Any, Any]], None] | None = None
        self.on_rollback: Callable[[dict[Any, Any]], None] | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction. Contention that PostgreSQL resolved by rolling it back is raised as
        `Contention` (HTTP 503, which agents and API clients retry) rather than as an internal error."""
        async with self._writer():
            async with self._sessions() as session:
                try:
                    async with session.begin():
                        yield session
                        if self.before_commit is not None and session.info:
                            await self.before_commit(session)
                except BaseException as exc:
                    if self.on_rollback is not None and session.info:
                        self.on_rollback(session.info)
                    if is_contention(exc):
                        raise Contention("The database was busy with a conflicting change; try again.") from exc
                    raise
        if self.on_commit is not None and session.info:
            self.on_commit(session.info)

    @asynccontextmanager
    async def _writer(self) -> AsyncIterator[None]:
        """SQLite takes one writer at a time, and a writer that finds the database locked polls for it with
        sleeps of 1 to 100 ms (its busy handler). Queuing this process's writers on a lock instead hands
        the database over at once; the busy timeout remains for other processes (the admin command)."""
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        # Closing the session hands the connection back to the pool, which rolls the transaction back;
        # unlike an explicit rollback, that leaves the loaded objects readable after the block.
        async with self._sessions() as session:
            await session.connection(execution_options={_READ_ONLY: True})
            yield session

    async def run_checkpoints(self, interval: float = 1.0) -> None:
        """Copy SQLite's write-ahead log into the database file every `interval` seconds, on a thread, so
        the log stays short without a commit ever doing it (see _configure_sqlite)."""
        if self._sqlite_path is None or self._sqlite_path == ":memory:":
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(_checkpoint, self._sqlite_path)
            except sqlite3.Error as exc:  # busy or briefly unavailable: the next round catches up
                log.warning("SQLite checkpoint failed: %s", exc)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _checkpoint(path: str) -> None:
    # PASSIVE: copies what no reader still needs, without waiting for or blocking anyone.
    with contextlib.closing(sqlite3.connect(path, timeout=1)) as conn:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
