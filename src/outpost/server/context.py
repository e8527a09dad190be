"""What every request handler shares: settings, the database, the dispatcher, URL building."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.config import ServerConfig
from outpost.encryption import Encryptor, resolve_keys
from outpost.server.dispatch import Dispatcher
from outpost.server.pings import PingBuffer
from outpost.server.quiet import QuietAgents
from outpost.store import events, notify
from outpost.store.db import Database
from outpost.store.tables import Setting


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

    def remember_agent(self, session_hash: str, agent_id: str, pool_id: str) -> tuple[str, str]:
        """`session_hash`: the session credential's hash (outpost.ids.hash_secret), taken once per request."""
        if len(self.agent_sessions) >= 100_000:
            self.agent_sessions.clear()  # long-gone sessions; the live ones are learnt again in one call
        self.agent_sessions[session_hash] = (agent_id, pool_id)
        return agent_id, pool_id

    def known_agent(self, session_hash: str) -> tuple[str, str] | None:
        return self.agent_sessions.get(session_hash)

    def attach(self) -> None:
        self.db.on_commit = self._after_commit
        if not self.db.is_sqlite:
            self.db.before_commit = self._announce

    def listener(self) -> notify.Listener:
        """Wake-ups from the other replicas (PostgreSQL only): their NOTIFYs wake our waiters."""
        return notify.Listener(self.db.url, self.replica_id, self._on_remote_wake, self._resync)

    async def _announce(self, session: AsyncSession) -> None:
        await notify.send(session, notify.encode(self.replica_id, session.info))

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
        pools = info.get(events.POOLS)
        if isinstance(pools, dict):
            for pool_id, count in pools.items():
                self.dispatcher.wake_pool(pool_id, count)
        agents = info.get(events.AGENTS)
        if isinstance(agents, set):
            for agent_id in agents:
                self.quiet.forget(agent_id)
                self.dispatcher.wake_agent(agent_id)

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


def encryption_keys(config: ServerConfig) -> list[str]:
    return resolve_keys(config.encryption_key, config.encryption_key_file, config.data_dir)


async def outpost(request: Request) -> Outpost:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    app_state: Outpost = request.app.state.outpost
    return app_state
