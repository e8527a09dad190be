"""Quiet agents: idle agents whose heartbeats and polls skip reading what cannot have changed.

Most heartbeats and polls come from idle agents and have nothing to say back. Once a read has found an
agent live, idle, with no job and no order, its next heartbeats (from the same address) are answered from
this table and only their time is recorded (outpost.server.pings), and its next polls only ask whether
its pool has work: that reading was most of the server's cost of holding an idle fleet.

What could change the answer removes the agent from the table at once: anything that wakes the agent
(a cancel or exit order, its token revoked, its pool or organization deleted, the monitor declaring it
unknown or errored, a job claimed for it, its own deregistration), in this process after the commit and
in every other replica through the same NOTIFY that wakes their polls; a gap in listening clears the
whole table. An entry also lapses after `ttl` seconds, so an agent is looked up again at least that
often whatever happens.
A heartbeat adds its agent only if nothing was forgotten since before its read began (`epoch`): a read
that started before a change committed must not make the agent quiet after the change was announced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class QuietAgent:
    agent_id: str
    token_id: str
    ip_address: str | None
    until: float


class QuietAgents:
    def __init__(self, ttl: float = 60.0, limit: int = 100_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._by_session: dict[str, QuietAgent] = {}  # session credential's hash -> entry
        self._sessions: dict[str, str] = {}  # agent id -> its session credential's hash
        self.epoch = 0  # counts forgets; see add()

    def __len__(self) -> int:
        return len(self._by_session)

    def get(self, session_hash: str, ip_address: str | None) -> QuietAgent | None:
        entry = self._by_session.get(session_hash)
        if entry is None:
            return None
        if entry.until < time.monotonic() or ip_address not in (None, entry.ip_address):
            self.forget(entry.agent_id)
            return None
        return entry

    def add(self, session_hash: str, agent_id: str, token_id: str, ip_address: str | None, *, epoch: int) -> None:
        """Make the agent quiet, if nothing was forgotten since `epoch` (read before the heartbeat's read)."""
        if epoch != self.epoch:
            return
        if len(self._by_session) >= self.limit:
            self.clear()  # the live ones come back with their next heartbeat's read
        self._by_session[session_hash] = QuietAgent(agent_id, token_id, ip_address, time.monotonic() + self.ttl)
        self._sessions[agent_id] = session_hash

    def forget(self, agent_id: str) -> None:
        self.epoch += 1
        session_hash = self._sessions.pop(agent_id, None)
        if session_hash is not None:
            self._by_session.pop(session_hash, None)

    def clear(self) -> None:
        self.epoch += 1
        self._by_session.clear()
        self._sessions.clear()
