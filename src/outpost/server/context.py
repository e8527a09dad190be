"""What every request handler shares: settings, the database, the dispatcher, URL building."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import cast

from fastapi import Request
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.config import ServerConfig
from outpost.encryption import Encryptor, resolve_keys
from outpost.errors import OutpostError
from outpost.server.dispatch import Dispatcher, Waiter
from outpost.server.log_watch import LogReaders
from outpost.server.pings import PingBuffer
from outpost.server.quiet import QuietAgents
from outpost.store import events, logs, notify
from outpost.store.db import Database
from outpost.store.tables import Setting
from outpost.timeutil import utcnow

log = logging.getLogger("outpost.server")

# Session info: the polls a write transaction claimed jobs for, each with its answer (None: nothing claimed).
_HANDED = "outpost_handed"
_GONE = object()  # the answer for a poll whose agent may no longer work


@dataclass
class Outpost:
    config: ServerConfig
    db: Database
    dispatcher: Dispatcher
    pings: PingBuffer
    secret: bytes = b""
    encryptor: Encryptor | None = None
    # Tells this process's own notifications from other replicas' (it has already woken its waiters).
    replica_id: str = field(default_factory=lambda: secrets.token_hex(8))
    # Agent session credential (its hash) -> (agent id, pool id), which never change for a session. Lets a
    # poll or heartbeat skip a round trip before its transaction; each still authenticates inside it.
    agent_sessions: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Idle agents whose heartbeats are answered from memory, forgotten whenever one is woken (quiet.py).
    quiet: QuietAgents = field(default_factory=QuietAgents)
    # Logs this process's readers stamped lately (log_watch.py).
    log_readers: LogReaders = field(default_factory=LogReaders)

    def remember_agent(self, session_hash: str, agent_id: str, pool_id: str) -> tuple[str, str]:
        """`session_hash`: the session credential's hash (outpost.ids.hash_secret), taken once per request."""
        if len(self.agent_sessions) >= 100_000:
            self.agent_sessions.clear()  # long-gone sessions; the live ones are learnt again in one call
        self.agent_sessions[session_hash] = (agent_id, pool_id)
        return agent_id, pool_id

    def known_agent(self, session_hash: str) -> tuple[str, str] | None:
        return self.agent_sessions.get(session_hash)

    async def watch_log(self, log_id: str) -> None:
        """Someone reads `log_id` while it is written: stamp it, at most every few seconds per process, so
        that the agent shipping it ships every 100 ms (server/log_watch.py)."""
        if not self.log_readers.due(log_id):
            return
        try:
            async with self.db.write() as session:
                await logs.mark_watched(session, log_id, utcnow())
        except SQLAlchemyError as exc:  # the read is what was asked for; the pace is a courtesy
            log.warning("could not stamp log %s as read: %s", log_id, exc)

    def attach(self) -> None:
        self.db.before_commit = self._before_commit
        self.db.on_commit = self._after_commit
        self.db.on_rollback = self._after_rollback

    def listener(self) -> notify.Listener:
        """Wake-ups from the other replicas (PostgreSQL only): their NOTIFYs wake our waiters."""
        return notify.Listener(self.db.url, self.replica_id, self._on_remote_wake, self._resync)

    async def _before_commit(self, session: AsyncSession) -> None:
        pools = session.info.get(events.POOLS)
        if pools:
            await self._hand_over(session, pools)
        if not self.db.is_sqlite:
            await notify.send(session, notify.encode(self.replica_id, session.info))

    async def _hand_over(self, session: AsyncSession, pools: dict[str, int]) -> None:
        """Jobs this transaction queued go to polls waiting here, claimed in this same transaction: a job
        reaches its agent without a transaction of its poll's own after the commit (one write fewer per job,
        and the dispatch latency of a wake-up and an answer). Wakes for jobs not handed remain, for this
        replica's waiters and (NOTIFY) the others'."""
        handed: list[tuple[Waiter, object]] = session.info.setdefault(_HANDED, [])
        for pool_id, count in list(pools.items()):
            given = 0
            while given < count and (waiter := self.dispatcher.take(pool_id)) is not None:
                assert waiter.hand is not None
                handed.append((waiter, None))  # first: should the transaction fail in `hand`, it is put back
                try:
                    answer = await waiter.hand(session)
                except OutpostError:
                    handed[-1] = (waiter, _GONE)  # the agent may no longer work: woken, its poll hears why
                    continue
                handed[-1] = (waiter, answer)
                if answer is None:
                    break  # nothing left to claim, or this agent cannot now: the rest are woken as before
                given += 1
            if given == count:
                del pools[pool_id]
            else:
                pools[pool_id] = count - given

    def _on_remote_wake(self, wake: notify.Wake) -> None:
        for pool_id, count in wake.pools.items():
            self.dispatcher.wake_pool(pool_id, count)
        for agent_id in wake.agents:
            self.quiet.forget(agent_id)
            self.dispatcher.wake_agent(agent_id)

    def _resync(self) -> None:
        """After a gap in listening: every waiting poll looks at the database once more, and every
        heartbeat reads again (a change this replica missed may concern any agent)."""
        self.quiet.clear()
        self.dispatcher.wake_all()

    def _after_commit(self, info: dict[object, object]) -> None:
        for waiter, answer in _handed(info):
            if answer is None:
                self.dispatcher.put_back(waiter)
            elif answer is _GONE:
                waiter.wake("agent")
            else:
                waiter.deliver(answer)
        pools = info.get(events.POOLS)
        if isinstance(pools, dict):
            for pool_id, count in pools.items():
                self.dispatcher.wake_pool(pool_id, count)
        agents = info.get(events.AGENTS)
        if isinstance(agents, set):
            for agent_id in agents:
                self.quiet.forget(agent_id)
                self.dispatcher.wake_agent(agent_id)

    def _after_rollback(self, info: dict[object, object]) -> None:
        """Whatever was claimed for waiting polls is undone: they wait on, first in line again."""
        for waiter, _ in reversed(_handed(info)):  # each goes back to the head: the last first
            self.dispatcher.put_back(waiter)

    async def load_secret(self) -> None:
        """The key behind capability URLs: one per installation, shared by every replica."""
        async with self.db.read() as session:
            row = await session.get(Setting, "capability_key")
        if row is None:
            try:
                async with self.db.write() as session:
                    session.add(Setting(key="capability_key", value=secrets.token_hex(32)))
            except IntegrityError:
                pass  # another replica made it first
            async with self.db.read() as session:
                row = await session.get(Setting, "capability_key")
        assert row is not None
        self.secret = bytes.fromhex(row.value)

    async def load_encryption(self, keys: list[str]) -> None:
        """The key that encrypts secrets at rest, checked against the canary the database keeps."""
        box = Encryptor(keys)
        async with self.db.read() as session:
            row = await session.get(Setting, "encryption_check")
        if row is None:
            try:
                async with self.db.write() as session:
                    session.add(Setting(key="encryption_check", value=box.canary()))
            except IntegrityError:
                pass  # another replica made it first; checked below
            async with self.db.read() as session:
                row = await session.get(Setting, "encryption_check")
        assert row is not None
        box.check_canary(row.value)
        self.encryptor = box

    @property
    def box(self) -> Encryptor:
        assert self.encryptor is not None, "load_encryption() runs at startup"
        return self.encryptor

    def capability(self, purpose: str, resource_id: str) -> str:
        mac = hmac.new(self.secret, f"{purpose}:{resource_id}".encode(), hashlib.sha256).hexdigest()
        return mac[:40]

    def check_capability(self, purpose: str, resource_id: str, presented: str) -> bool:
        # Bytes, not str: compare_digest refuses non-ASCII strings (a TypeError, so a 500, for a mangled URL).
        return hmac.compare_digest(self.capability(purpose, resource_id).encode(), presented.encode())

    def base_url(self, request: Request) -> str:
        if self.config.external_url:
            return self.config.external_url.rstrip("/")
        return str(request.base_url).rstrip("/")


def _handed(info: dict[object, object]) -> list[tuple[Waiter, object]]:
    return cast("list[tuple[Waiter, object]]", info.get(_HANDED, []))


def encryption_keys(config: ServerConfig) -> list[str]:
    return resolve_keys(config.encryption_key, config.encryption_key_file, config.data_dir)


async def outpost(request: Request) -> Outpost:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    app_state: Outpost = request.app.state.outpost
    return app_state
