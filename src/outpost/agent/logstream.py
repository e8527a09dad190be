"""A job's log on its way to the server: spooled to disk, shipped in order, resent until stored.

Every byte terraform writes is appended to a spool file first, so memory stays bounded however long the
server is away; the shipper sends from the last byte the server acknowledged. Appends are idempotent on
the server (by offset), so a chunk resent after a lost answer is never stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from outpost.agent.client import Client
from outpost.agent.masking import Masker

log = logging.getLogger("outpost.agent.logstream")

CHUNK = 1024 * 1024
# Gather output this long before sending: half the requests of 50 ms; lag p99 near 150 ms. Each append's
# answer says how long to gather before the next (longer while nobody reads the log: server/log_watch.py).
BATCH_WAIT = 0.1
_WAIT_BOUNDS = (0.05, 5.0)  # whatever a server says


class LogStream:
    def __init__(
        self,
        client: Client,
        job_id: str,
        token: str,
        spool: Path,
        *,
        base: int = 0,
        on_cancel: Callable[[str], None] | None = None,
        masker: Masker | None = None,
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.token = token
        self.base = base  # the server's log size when the job started
        self.fd = os.open(spool, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self.written = 0
        self.acked = 0
        self.on_cancel = on_cancel
        # Sensitive values are replaced here, before anything reaches the spool or the server.
        self.masker = masker
        self._data = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.wait = BATCH_WAIT

    def start(self) -> None:
        self._task = asyncio.create_task(self._ship())

    def write(self, data: bytes) -> None:
        if self.masker is not None:
            data = self.masker.feed(data)
        self._append(data)

    def _append(self, data: bytes) -> None:
        if not data:
            return
        os.write(self.fd, data)
        self.written += len(data)
        self._data.set()

    def line(self, text: str) -> None:
        self.write(text.encode() + b"\n")

    @property
    def size(self) -> int:
        """The log's size on the server once everything written so far is shipped."""
        return self.base + self.written

    async def _ship(self) -> None:
        while True:
            await self._data.wait()
            self._data.clear()
            if not self._closing:
                # Cut short by close(): the job's end waits for its log, and its next job for that end.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), self.wait)
            while self.acked < self.written:
                chunk = os.pread(self.fd, min(CHUNK, self.written - self.acked), self.acked)
                answer = await self.client.append_log(self.job_id, self.token, self.base + self.acked, chunk)
                # The server's size is the truth: after a gap (416) or a duplicate it says where to go on from.
                self.acked = max(0, min(answer.size - self.base, self.written))
                if answer.interval is not None:
                    self.wait = min(max(answer.interval, _WAIT_BOUNDS[0]), _WAIT_BOUNDS[1])
                if answer.cancel and self.on_cancel is not None:
                    for order in answer.cancel:
                        self.on_cancel(order["kind"])
            if self._closing and self.acked >= self.written:
                return

    async def close(self) -> None:
        """Ship everything; returns once the server holds every byte."""
        if self.masker is not None:
            self._append(self.masker.flush())
        self._closing = True
        self._closed.set()
        self._data.set()
        if self._task is not None:
            await self._task
        os.close(self.fd)

    async def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(OSError):
            os.close(self.fd)
