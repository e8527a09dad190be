"""Run logs: append-only byte streams stored as chunks keyed by offset.

Appends are idempotent: the agent says at which offset its bytes start; bytes the server already holds
are skipped, a gap is refused with the server's own size (the client resends from there). The plan or
apply row holds the size and whether the log is complete.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.errors import RangeNotSatisfiable
from outpost.store.tables import Apply, LogChunk, Plan

MAX_LOG_BYTES = 512 * 1024 * 1024

PhaseTable = type[Plan] | type[Apply]


def table_for(log_id: str) -> PhaseTable:
    return Plan if log_id.startswith("plan-") else Apply


class LogGap(RangeNotSatisfiable):
    """The chunk starts past the end of the stored log."""

    def __init__(self, size: int) -> None:
        super().__init__(f"The log holds {size} bytes; resend from offset {size}.")
        self.size = size


# Appends are the most frequent write of a running job, so their statements are built once (building a
# SQLAlchemy expression costs more than SQLite running it). Each locks the phase row: appends to one log
# are serialized, whatever the database.
def _locked_phase(table: PhaseTable, by: str) -> Any:
    key = table.id if by == "id" else table.run_id
    return (
        select(table.id, table.log_size, table.log_complete, table.log_watched_at)
        .where(key == bindparam("key"))
        .with_for_update()
    )


_LOCK = {(t, by): _locked_phase(t, by) for t in (Plan, Apply) for by in ("id", "run")}
_RESIZE = {t: update(t).where(t.id == bindparam("log_id")).values(log_size=bindparam("size")) for t in (Plan, Apply)}
_CHUNK = insert(LogChunk)
_WATCHED = {
    t: update(t).where(t.id == bindparam("log_id")).values(log_watched_at=bindparam("at")) for t in (Plan, Apply)
}


class Appended(NamedTuple):
    size: int  # the log's size afterwards
    watched_at: datetime | None  # when someone last read the log while it was being written


async def append(session: AsyncSession, log_id: str, offset: int, data: bytes) -> int:
    """Store `data` at `offset` of log `log_id`; return the log's size afterwards."""
    return (await _append(session, table_for(log_id), "id", log_id, offset, data, orm=True)).size


async def append_to_run(session: AsyncSession, table: PhaseTable, run_id: str, offset: int, data: bytes) -> Appended:
    """`append` to the log of a run's plan (`table` Plan) or apply (Apply), found in the same statement.
    For a session that has not loaded that plan or apply: every statement is the connection's, past the
    ORM, and so is the size it writes."""
    return await _append(session, table, "run", run_id, offset, data, orm=False)


async def mark_watched(session: AsyncSession, log_id: str, at: datetime) -> None:
    """Someone is reading log `log_id` while it is written (its appends' answers say so)."""
    connection = await session.connection()
    await connection.execute(_WATCHED[table_for(log_id)], {"log_id": log_id, "at": at})


async def _append(
    session: AsyncSession, table: PhaseTable, by: str, key: str, offset: int, data: bytes, *, orm: bool
) -> Appended:
    connection = await session.connection()
    row = (await (session if orm else connection).execute(_LOCK[table, by], {"key": key})).one()
    log_id = str(row.id)
    size = int(row.log_size)
    watched_at = row.log_watched_at
    if offset > size:
        raise LogGap(size)
    end = offset + len(data)
    if end <= size or row.log_complete:
        return Appended(size, watched_at)
    tail = data[size - offset :]
    if size + len(tail) > MAX_LOG_BYTES:
        tail = tail[: max(0, MAX_LOG_BYTES - size)]
        if not tail:
            return Appended(size, watched_at)
    new_size = size + len(tail)
    if orm:  # the new size also reaches a plan or apply the session has loaded
        session.add(LogChunk(log_id=log_id, offset=size, data=tail))
        await session.execute(update(table).where(table.id == log_id).values(log_size=new_size))
    else:  # Core statements, built once, past the ORM's bookkeeping
        await connection.execute(_CHUNK, {"log_id": log_id, "offset": size, "data": tail})
        await connection.execute(_RESIZE[table], {"log_id": log_id, "size": new_size})
    return Appended(new_size, watched_at)


async def size(session: AsyncSession, log_id: str) -> int:
    table = table_for(log_id)
    return int((await session.execute(select(table.log_size).where(table.id == log_id))).scalar_one())


async def read(session: AsyncSession, log_id: str, offset: int, limit: int) -> bytes:
    """Raw log bytes [offset, offset + limit)."""
    if limit <= 0:
        return b""
    end = offset + limit
    # The chunk containing `offset` starts at or before it: take the last such start.
    first = (
        await session.execute(
            select(LogChunk.offset)
            .where(LogChunk.log_id == log_id, LogChunk.offset <= offset)
            .order_by(LogChunk.offset.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    start = first if first is not None else 0
    chunks = (
        await session.execute(
            select(LogChunk.offset, LogChunk.data)
            .where(LogChunk.log_id == log_id, LogChunk.offset >= start, LogChunk.offset < end)
            .order_by(LogChunk.offset)
        )
    ).all()
    out = bytearray()
    for chunk_offset, data in chunks:
        lo = max(offset, chunk_offset) - chunk_offset
        hi = min(end, chunk_offset + len(data)) - chunk_offset
        if hi > lo:
            out += data[lo:hi]
    return bytes(out)


async def read_all(session: AsyncSession, log_id: str) -> bytes:
    chunks = (
        await session.execute(select(LogChunk.data).where(LogChunk.log_id == log_id).order_by(LogChunk.offset))
    ).scalars()
    return b"".join(chunks)


async def complete(session: AsyncSession, log_id: str) -> None:
    table = table_for(log_id)
    await session.execute(update(table).where(table.id == log_id).values(log_complete=True))


async def write_server_line(session: AsyncSession, log_id: str, text: str) -> None:
    """Append a line written by the server itself (e.g. why a phase errored)."""
    table = table_for(log_id)
    size = (await session.execute(select(table.log_size).where(table.id == log_id))).scalar_one()
    await append(session, log_id, size, text.encode() + b"\n")
