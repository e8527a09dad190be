"""The pace the server asks of a log's appends, and readers' stamps."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import OperationalError

from outpost.server import log_watch
from outpost.server.context import Outpost
from outpost.server.log_watch import LogReaders

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("watched_at", "expected"),
    [
        (None, log_watch.UNWATCHED_INTERVAL),
        (NOW - timedelta(seconds=1), log_watch.WATCHED_INTERVAL),
        (NOW - log_watch.WATCH_WINDOW + timedelta(milliseconds=1), log_watch.WATCHED_INTERVAL),
        (NOW - log_watch.WATCH_WINDOW, log_watch.UNWATCHED_INTERVAL),
        (NOW - timedelta(hours=1), log_watch.UNWATCHED_INTERVAL),
    ],
)
def test_a_log_read_lately_is_shipped_fast(watched_at: datetime | None, expected: float) -> None:
    assert log_watch.interval(watched_at, NOW) == expected


def test_readers_stamp_each_log_once_per_period() -> None:
    readers = LogReaders(every=0.2, limit=3)
    assert readers.due("plan-a")
    assert not readers.due("plan-a")  # a reader polling hard: no write per read
    assert readers.due("apply-b")  # each log on its own
    assert readers.due("plan-c")
    assert readers.due("plan-d")  # past the limit: only recent stamps are kept
    asyncio.run(asyncio.sleep(0.25))
    assert readers.due("plan-a")


class _FailingDatabase:
    def __init__(self) -> None:
        self.writes = 0

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        self.writes += 1
        raise OperationalError("UPDATE plans", {}, Exception("database is locked"))
        yield


def test_a_stamp_that_cannot_be_written_does_not_fail_the_read(caplog: pytest.LogCaptureFixture) -> None:
    app = SimpleNamespace(log_readers=LogReaders(), db=_FailingDatabase())
    asyncio.run(Outpost.watch_log(app, "plan-a"))  # type: ignore[arg-type]
    asyncio.run(Outpost.watch_log(app, "plan-a"))  # type: ignore[arg-type]  # throttled: no second try at once
    assert app.db.writes == 1
    assert "could not stamp log plan-a as read" in caplog.text
