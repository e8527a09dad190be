"""Heartbeats of idle agents, written in one batch a second instead of one write transaction each.

An idle agent's heartbeat changes nothing but its last-ping time (and, once a minute, its token's
last-used time). Ten thousand agents beating every ten seconds would otherwise be a thousand write
transactions a second, which SQLite serializes. Revocation, errored status and cancel orders are still
answered at the next heartbeat (read at once, or forgotten from outpost.server.quiet when announced); only
the timestamp waits, at most `interval` seconds, far inside `--agent-unknown-after`. This process's
monitor flushes before it looks for silent agents, so it never misses a ping that arrived here.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from outpost.errors import Contention
from outpost.store import agents as agents_store
from outpost.store import pools
from outpost.store.db import Database

log = logging.getLogger(__name__)


class PingBuffer:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: dict[str, tuple[datetime, str]] = {}  # agent id -> (last ping, its token id)
        self._flushing = asyncio.Lock()

    def record(self, agent_id: str, token_id: str, at: datetime) -> None:
        self._pending[agent_id] = (at, token_id)

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        async with self._flushing:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            try:
                async with self.db.write() as session:
                    await agents_store.record_pings(session, {a: at for a, (at, _) in batch.items()})
                    await pools.touch_tokens(session, {token for _, token in batch.values()})
            except BaseException:
                # Not lost: the next flush writes them, unless a newer ping of the same agent came meanwhile.
                for agent_id, ping in batch.items():
                    self._pending.setdefault(agent_id, ping)
                raise

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Contention:
                log.info("heartbeat batch met a conflicting change; writing it with the next one")
            except Exception:
                log.exception("heartbeat batch failed; writing it with the next one")
