"""A file lock shared by concurrent jobs: those of one agent and those of other agents on the host.

flock(2) locks belong to an open file description, so two jobs of one process that each open the lock
file exclude each other exactly as two processes do, and the kernel drops the lock when its holder dies
(a killed agent never leaves a cache locked). Waiting polls with a short, growing interval, which keeps
the wait cancellable (a thread blocked in flock could not be).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from outpost.errors import AgentError


class LockAbandoned(AgentError):
    """The wait for a lock was given up (the job was canceled meanwhile)."""


@asynccontextmanager
async def file_lock(
    path: Path, *, on_wait: Callable[[], None] | None = None, give_up: Callable[[], bool] | None = None
) -> AsyncIterator[None]:
    """Hold an exclusive lock on `path` (created if missing); `on_wait` is called once if it must wait,
    and the wait ends with LockAbandoned as soon as `give_up` says so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        delay = 0.02
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if give_up is not None and give_up():
                    raise LockAbandoned(f"gave up waiting for {path}") from None
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
