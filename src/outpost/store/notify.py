"""Wake-ups across replicas: PostgreSQL LISTEN/NOTIFY.

A write transaction that queued jobs or has news for agents (see `outpost.store.events`) also sends
one NOTIFY on the `outpost_wake` channel before it commits; PostgreSQL delivers it to every listening
replica when, and only if, the transaction commits, so a woken replica always finds the change. Each
replica keeps one listening connection, which reconnects when it breaks; after a (re)connect it wakes
all its local waiters once, since a notification sent while it was away is lost. NOTIFY only makes
pickup fast: every poll claims before it waits and ends within its timeout, and the monitor's sweep
re-wakes pools with queued jobs, so nothing depends on a notification arriving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.store import events

log = logging.getLogger("outpost.store.notify")

CHANNEL = "outpost_wake"
# PostgreSQL refuses payloads of 8000 bytes or more; ids are at most 40 characters.
_MAX_PAYLOAD = 7000


@dataclass
class Wake:
    origin: str
    pools: dict[str, int] = field(default_factory=dict)
    agents: set[str] = field(default_factory=set)


def encode(origin: str, info: dict[Any, Any]) -> list[str]:
    """The payloads announcing a transaction's wake-ups (none when there is nothing to announce)."""
    pools: dict[str, int] = dict(info.get(events.POOLS) or {})
    agents = sorted(info.get(events.AGENTS) or ())
    payloads: list[str] = []
    current: dict[str, Any] = {"o": origin, "p": {}, "a": []}
    size = len(json.dumps(current))
    for kind, key, value in [*(("p", k, v) for k, v in pools.items()), *(("a", a, None) for a in agents)]:
        cost = len(key) + 12
        if size + cost > _MAX_PAYLOAD:
            payloads.append(json.dumps(current, separators=(",", ":")))
            current = {"o": origin, "p": {}, "a": []}
            size = len(json.dumps(current))
        if kind == "p":
            current["p"][key] = value
        else:
            current["a"].append(key)
        size += cost
    if current["p"] or current["a"]:
        payloads.append(json.dumps(current, separators=(",", ":")))
    return payloads


def decode(payload: str) -> Wake | None:
    try:
        data = json.loads(payload)
        pools = {str(k): int(v) for k, v in dict(data.get("p") or {}).items()}
        return Wake(origin=str(data["o"]), pools=pools, agents={str(a) for a in data.get("a") or ()})
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("ignored a malformed notification on %s", CHANNEL)
        return None


async def send(session: AsyncSession, payloads: list[str]) -> None:
    """NOTIFY inside the caller's transaction: delivered at commit, dropped on rollback."""
    for payload in payloads:
        await session.execute(select(func.pg_notify(CHANNEL, payload)))


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a libpq connection string (the listener connects with psycopg itself)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """One LISTEN connection per server process, kept open (reconnecting with backoff) until stopped."""

    def __init__(
        self,
        url: str,
        origin: str,
        on_wake: Callable[[Wake], None],
        on_connect: Callable[[], None],
        *,
        check_interval: float = 15.0,
    ) -> None:
        self._conninfo = libpq_url(url)
        self.origin = origin
        self._on_wake = on_wake
        self._on_connect = on_connect
        self._check_interval = check_interval
        self.listening = asyncio.Event()
        self.received = 0

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("the LISTEN connection failed (%s); reconnecting in %.1f s", exc, delay)
            if self.listening.is_set():
                delay = 0.2  # it was up: start the backoff over
            self.listening.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 10.0)

    async def _listen(self) -> None:
        # Keepalives let a silently dropped connection (a dead host, a cut network) end in minutes too.
        async with await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            application_name="outpost-listener",
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        ) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            self._on_connect()  # whatever was announced while no one listened: look again
            while True:
                async for note in conn.notifies(timeout=self._check_interval):
                    wake = decode(note.payload)
                    if wake is not None and wake.origin != self.origin:
                        self.received += 1
                        self._on_wake(wake)
                await conn.execute("SELECT 1")  # quiet for a while: is the connection still alive?
