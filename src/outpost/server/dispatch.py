"""Waking agents that wait in a long-poll.

Each waiting poll registers a `Waiter` under its pool and its agent. A new job goes to exactly one
waiter of its pool (FIFO): handed over inside the very transaction that queued it, when the waiter can
claim there (`Waiter.hand`, see outpost.server.context), so its poll answers without a transaction of
its own; woken otherwise, to claim in the database itself. News for an agent (a cancel, an order to
exit) wakes that agent's waiters. A waiter that is woken but leaves without claiming passes the wake
on, so a job never waits for a poll that already went away. Waking only makes pickup fast: every poll
also claims before it waits (an idle one, when a read of its pool less than `EMPTY_FOR` old found
nothing queued and no job was announced since, trusts that read: `known_empty`), and ends within the
long-poll timeout, so nothing depends on a wake for longer than that; a handed job whose answer is lost
is delivered again at the agent's next poll (it is assigned to it).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

# How long a read that found a pool with no queued job answers for it (see Dispatcher.known_empty).
EMPTY_FOR = 1.0

# Claims a job for the waiter inside the caller's write transaction (its session); returns what the poll
# answers with, or None when it claimed nothing (the waiter is then woken to look for itself).
Hand = Callable[[Any], Awaitable[Any]]


class Waiter:
    __slots__ = ("_settled", "agent_id", "answer", "event", "hand", "pool_id", "reason", "taken", "used", "waiting")

    def __init__(self, pool_id: str, agent_id: str, hand: Hand | None = None) -> None:
        self.pool_id = pool_id
        self.agent_id = agent_id
        self.hand = hand
        self.event = asyncio.Event()
        self.reason: str | None = None  # "job", "handed", "agent" or "shutdown"
        self.answer: Any = None  # what `hand` claimed, once its transaction committed
        self.used = False  # the poll went on to claim after the wake
        self.waiting = False  # inside `wait`: only such a poll is handed a job
        self.taken = False  # a transaction is claiming for it (Dispatcher.take), not yet settled
        self._settled: asyncio.Future[None] | None = None

    def wake(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()
        self.settle()

    def deliver(self, answer: Any) -> None:
        """The job `hand` claimed is the waiter's: its transaction committed."""
        if not self.event.is_set():
            self.answer = answer
            self.wake("handed")

    def settle(self) -> None:
        """The transaction that took the waiter is over (`deliver`, `wake` or `Dispatcher.put_back`)."""
        self.taken = False
        if self._settled is not None and not self._settled.done():
            self._settled.set_result(None)

    async def wait(self, timeout: float, gone: asyncio.Future[None] | None = None) -> bool:
        """True when woken; False on timeout, or when `gone` completes first (the client left)."""
        woken = asyncio.ensure_future(self.event.wait())
        waits: list[asyncio.Future[Any]] = [woken] if gone is None else [woken, gone]
        self.waiting = True
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done and self.taken:
                # Past the deadline while a transaction claims a job for this poll: its answer is due at
                # that commit (a poll ending now would leave the job to the agent's next poll, later).
                self._settled = asyncio.get_running_loop().create_future()
                await asyncio.wait([*waits, self._settled], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting = False
            woken.cancel()
        if not self.event.is_set() or (gone is not None and gone.done()):
            return False
        self.used = True
        return True


class Dispatcher:
    def __init__(self) -> None:
        self._pools: dict[str, deque[Waiter]] = {}
        self._agents: dict[str, set[Waiter]] = {}
        self.closed = False
        # Pools a read found with nothing queued: pool id -> when that read began. Any wake of a pool (a
        # job queued here, or on another replica through NOTIFY, or a resync) counts in `queue_epoch` and
        # voids them all.
        self._empty: dict[str, float] = {}
        self.queue_epoch = 0

    def known_empty(self, pool_id: str) -> bool:
        """Whether a read that began less than `EMPTY_FOR` seconds ago found the pool with no queued job,
        and no job was announced since: an idle poll then need not read again. A job queued meanwhile woke
        the waiting polls as usual, so a poll trusting this misses nothing it would not miss by having read
        a moment earlier; and a wake that never came is made up for within `EMPTY_FOR`, as by the read."""
        began = self._empty.get(pool_id)
        return began is not None and time.monotonic() - began < EMPTY_FOR

    def found_empty(self, pool_id: str, began: float, epoch: int) -> None:
        """A read that began at `began` (monotonic), when `queue_epoch` was `epoch`, found nothing queued."""
        if epoch == self.queue_epoch:
            self._empty[pool_id] = began

    def _jobs_announced(self) -> None:
        self.queue_epoch += 1
        self._empty.clear()

    def close(self) -> None:
        """Server shutdown: every waiting poll answers now (empty), and new ones do not wait."""
        self.closed = True
        for waiters in list(self._agents.values()):
            for waiter in list(waiters):
                waiter.wake("shutdown")

    @contextmanager
    def waiting(self, pool_id: str, agent_id: str, *, for_jobs: bool, hand: Hand | None = None) -> Iterator[Waiter]:
        waiter = Waiter(pool_id, agent_id, hand)
        if for_jobs:
            self._pools.setdefault(pool_id, deque()).append(waiter)
        self._agents.setdefault(agent_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            self._discard(waiter, for_jobs)
            if waiter.reason == "job" and not waiter.used:
                self.wake_pool(pool_id)  # woken, then gone (client left): pass the wake on

    def _discard(self, waiter: Waiter, for_jobs: bool) -> None:
        if for_jobs:
            queue = self._pools.get(waiter.pool_id)
            if queue is not None:
                try:
                    queue.remove(waiter)
                except ValueError:
                    pass
                if not queue:
                    del self._pools[waiter.pool_id]
        agents = self._agents.get(waiter.agent_id)
        if agents is not None:
            agents.discard(waiter)
            if not agents:
                del self._agents[waiter.agent_id]

    def wake_pool(self, pool_id: str, count: int = 1) -> int:
        """Wake up to `count` waiters of the pool; return how many were woken."""
        self._jobs_announced()
        queue = self._pools.get(pool_id)
        woken = 0
        while queue and woken < count:
            waiter = queue.popleft()
            if not waiter.event.is_set():
                waiter.wake("job")
                woken += 1
        if queue is not None and not queue:
            self._pools.pop(pool_id, None)
        return woken

    def take(self, pool_id: str) -> Waiter | None:
        """The pool's next waiting poll that can be handed a job (it leaves the queue): the caller's
        transaction claims for it, then delivers the answer, wakes it, or puts it back (outpost.server.context)."""
        queue = self._pools.get(pool_id)
        if not queue:
            return None
        for waiter in queue:
            if waiter.hand is not None and waiter.waiting and not waiter.event.is_set():
                queue.remove(waiter)
                if not queue:
                    del self._pools[pool_id]
                waiter.taken = True
                return waiter
        return None

    def put_back(self, waiter: Waiter) -> None:
        """A taken waiter that was handed nothing goes back to the head of its queue, if its poll still waits
        (one past its deadline ends now, unless a wake that follows reaches it first)."""
        if waiter in self._agents.get(waiter.agent_id, ()) and not waiter.event.is_set():
            self._pools.setdefault(waiter.pool_id, deque()).appendleft(waiter)
        waiter.settle()

    def wake_agent(self, agent_id: str) -> None:
        for waiter in list(self._agents.get(agent_id, ())):
            waiter.wake("agent")

    def wake_all(self) -> None:
        """Every waiting poll checks the database again (news may have been missed)."""
        self._jobs_announced()
        for waiters in list(self._agents.values()):
            for waiter in list(waiters):
                waiter.wake("agent")

    def waiting_count(self, pool_id: str | None = None) -> int:
        if pool_id is None:
            return sum(len(q) for q in self._pools.values())
        return len(self._pools.get(pool_id, ()))

    def pools_with_waiters(self) -> list[str]:
        return list(self._pools)
