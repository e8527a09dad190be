"""The long-poll dispatcher: who gets woken, in which order, and what happens to a wake nobody used."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack

import pytest

from outpost.server import dispatch
from outpost.server.dispatch import Dispatcher, Waiter

POOL = "apool-1"
OTHER_POOL = "apool-2"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def woken(*waiters: Waiter) -> list[bool]:
    return [w.event.is_set() for w in waiters]


def assert_empty(d: Dispatcher) -> None:
    assert d.waiting_count() == 0
    assert d.pools_with_waiters() == []
    assert d._agents == {}


def test_wake_pool_wakes_one_waiter_in_arrival_order() -> None:
    d = Dispatcher()
    with ExitStack() as stack:
        waiters = [stack.enter_context(d.waiting(POOL, f"agent-{i}", for_jobs=True)) for i in range(3)]
        assert d.waiting_count(POOL) == 3
        assert d.waiting_count() == 3

        assert d.wake_pool(POOL) == 1
        assert woken(*waiters) == [True, False, False]
        assert waiters[0].reason == "job"
        assert d.waiting_count(POOL) == 2, "a woken waiter leaves the queue"

        assert d.wake_pool(POOL) == 1
        assert woken(*waiters) == [True, True, False]
        assert d.wake_pool(POOL, count=5) == 1, "only as many as wait"
        assert woken(*waiters) == [True, True, True]
        assert d.waiting_count(POOL) == 0
        assert d.pools_with_waiters() == []
        assert d.wake_pool(POOL) == 0
        for w in waiters:
            w.used = True  # as if each poll went on to claim
    assert_empty(d)


def test_wake_pool_with_count_and_other_pools() -> None:
    d = Dispatcher()
    with ExitStack() as stack:
        here = [stack.enter_context(d.waiting(POOL, f"agent-{i}", for_jobs=True)) for i in range(4)]
        there = stack.enter_context(d.waiting(OTHER_POOL, "agent-x", for_jobs=True))
        assert sorted(d.pools_with_waiters()) == [POOL, OTHER_POOL]
        assert d.wake_pool(POOL, count=2) == 2
        assert woken(*here, there) == [True, True, False, False, False]
        assert d.wake_pool("apool-nobody") == 0
        assert d.waiting_count(POOL) == 2
        assert d.waiting_count(OTHER_POOL) == 1
        assert d.waiting_count() == 3
        for w in here:
            w.used = True
    assert_empty(d)


def test_unused_wake_passes_to_the_next_waiter() -> None:
    """A waiter woken for a job whose poll goes away before `wait` returns hands the wake on."""
    d = Dispatcher()
    first_cm = d.waiting(POOL, "agent-1", for_jobs=True)
    first = first_cm.__enter__()
    with d.waiting(POOL, "agent-2", for_jobs=True) as second, d.waiting(POOL, "agent-3", for_jobs=True) as third:
        assert d.wake_pool(POOL) == 1
        assert woken(first, second, third) == [True, False, False]
        first_cm.__exit__(None, None, None)  # the poll left without awaiting `wait`
        assert first.used is False
        assert woken(second, third) == [True, False], "exactly the next waiter in line gets the wake"
        assert second.reason == "job"
        assert d.waiting_count(POOL) == 1
        second.used = True  # second's poll claims: its wake is used
    assert third.event.is_set() is False
    assert_empty(d)


def test_leaving_without_a_job_wake_wakes_nobody() -> None:
    d = Dispatcher()
    with d.waiting(POOL, "agent-2", for_jobs=True) as second:
        with d.waiting(POOL, "agent-1", for_jobs=True):
            pass  # timed out: never woken
        assert second.event.is_set() is False
        with d.waiting(POOL, "agent-1", for_jobs=True):
            d.wake_agent("agent-1")  # woken for news, not for a job
        assert second.event.is_set() is False
        assert d.waiting_count(POOL) == 1
    assert_empty(d)


def test_unused_wake_with_nobody_left_is_dropped() -> None:
    d = Dispatcher()
    with d.waiting(POOL, "agent-1", for_jobs=True) as only:
        assert d.wake_pool(POOL) == 1
    assert only.used is False
    assert_empty(d)


@pytest.mark.anyio
async def test_wait_returns_true_when_woken_and_the_wake_is_used() -> None:
    d = Dispatcher()
    with d.waiting(POOL, "agent-1", for_jobs=True) as first, d.waiting(POOL, "agent-2", for_jobs=True) as second:
        waiting = asyncio.ensure_future(first.wait(timeout=30))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert d.wake_pool(POOL) == 1
        assert await waiting is True
        assert first.used is True
        # first leaves (inner context exits first) having used its wake: it is not passed on.
    assert second.event.is_set() is False
    assert_empty(d)


@pytest.mark.anyio
async def test_wait_times_out_without_a_wake() -> None:
    d = Dispatcher()
    with d.waiting(POOL, "agent-1", for_jobs=True) as w:
        assert await w.wait(timeout=0) is False
        assert w.used is False
    assert_empty(d)


@pytest.mark.anyio
async def test_wake_for_a_client_that_left_reaches_the_next_waiter() -> None:
    """`wait` returns False when the client is gone, even if a wake came too: the next waiter gets it."""
    d = Dispatcher()
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    first_cm = d.waiting(POOL, "agent-a", for_jobs=True)
    first = first_cm.__enter__()
    with d.waiting(POOL, "agent-b", for_jobs=True) as second:
        waiting = asyncio.ensure_future(first.wait(timeout=30, gone=gone))
        await asyncio.sleep(0)
        gone.set_result(None)
        assert d.wake_pool(POOL) == 1
        assert await waiting is False
        assert first.used is False
        assert second.event.is_set() is False
        first_cm.__exit__(None, None, None)
        assert second.event.is_set() is True
        assert second.reason == "job"
        assert await second.wait(timeout=30) is True
        assert second.used is True
    assert_empty(d)


def test_wake_agent_wakes_all_its_waiters_only() -> None:
    d = Dispatcher()
    with ExitStack() as stack:
        polls = [stack.enter_context(d.waiting(POOL, "agent-1", for_jobs=True)) for _ in range(2)]
        news_only = stack.enter_context(d.waiting(POOL, "agent-1", for_jobs=False))
        other = stack.enter_context(d.waiting(POOL, "agent-2", for_jobs=True))
        assert d.waiting_count(POOL) == 3, "a wait for news only is not in the pool's queue"

        d.wake_agent("agent-1")
        assert woken(*polls, news_only, other) == [True, True, True, False]
        assert {w.reason for w in (*polls, news_only)} == {"agent"}
        d.wake_agent("agent-unknown")

        # A job wake skips waiters already woken for news and goes to the next in line.
        assert d.wake_pool(POOL) == 1
        assert other.event.is_set()
        assert other.reason == "job"
        other.used = True
        # Waking a woken waiter again keeps its first reason.
        polls[0].wake("job")
        assert polls[0].reason == "agent"
    assert_empty(d)


def test_close_wakes_everyone() -> None:
    d = Dispatcher()
    with ExitStack() as stack:
        waiters = [stack.enter_context(d.waiting(POOL, f"agent-{i}", for_jobs=True)) for i in range(3)]
        waiters.append(stack.enter_context(d.waiting(OTHER_POOL, "agent-9", for_jobs=True)))
        waiters.append(stack.enter_context(d.waiting(POOL, "agent-0", for_jobs=False)))
        assert d.closed is False
        d.close()
        assert d.closed is True
        assert all(woken(*waiters))
        assert {w.reason for w in waiters} == {"shutdown"}
    assert_empty(d)


def test_bookkeeping_returns_to_zero_after_errors() -> None:
    d = Dispatcher()
    with pytest.raises(RuntimeError), d.waiting(POOL, "agent-1", for_jobs=True):
        assert d.waiting_count(POOL) == 1
        raise RuntimeError("the poll failed")
    assert_empty(d)


async def _hand(session: object) -> str:
    return "claimed"


async def waiting_in(*waiters: Waiter, timeout: float = 30) -> list[asyncio.Future[bool]]:
    """The waiters' polls inside `wait` (only those are handed jobs)."""
    polls = [asyncio.ensure_future(w.wait(timeout)) for w in waiters]
    await asyncio.sleep(0)
    return polls


@pytest.mark.anyio
async def test_take_gives_the_first_waiting_poll_that_can_be_handed_a_job() -> None:
    d = Dispatcher()
    with (
        d.waiting(POOL, "agent-0", for_jobs=True) as plain,
        d.waiting(POOL, "agent-1", for_jobs=True, hand=_hand) as woken_already,
        d.waiting(POOL, "agent-2", for_jobs=True, hand=_hand) as still_looking,
        d.waiting(POOL, "agent-3", for_jobs=True, hand=_hand) as first,
        d.waiting(POOL, "agent-4", for_jobs=True, hand=_hand) as second,
    ):
        polls = await waiting_in(plain, woken_already, first, second)
        woken_already.wake("agent")
        taken = d.take(POOL)
        assert taken is first, "passed over: no `hand`, woken already, not yet inside `wait`"
        assert first.taken is True
        assert d.waiting_count(POOL) == 4, "the taken waiter left the queue"
        assert d.take(OTHER_POOL) is None
        assert d.wake_pool(POOL, count=5) == 3
        assert woken(plain, still_looking, second) == [True, True, True]
        assert first.event.is_set() is False, "a taken waiter is not woken by the pool's wakes"
        first.deliver(["job-1"])
        assert await asyncio.gather(*polls) == [True, True, True, True]
        await still_looking.wait(0)
    assert_empty(d)


@pytest.mark.anyio
async def test_delivered_answer_ends_the_wait_and_no_wake_is_passed_on() -> None:
    d = Dispatcher()
    first_cm = d.waiting(POOL, "agent-1", for_jobs=True, hand=_hand)
    first = first_cm.__enter__()
    with d.waiting(POOL, "agent-2", for_jobs=True, hand=_hand) as second:
        (poll,) = await waiting_in(first)
        assert d.take(POOL) is first
        first.deliver(["job-1"])
        assert await poll is True
        assert (first.reason, first.answer, first.taken) == ("handed", ["job-1"], False)
        first.deliver(["job-2"])
        assert first.answer == ["job-1"], "one answer per wait"
        first_cm.__exit__(None, None, None)
        assert second.event.is_set() is False, "the job is the first waiter's: nothing to pass on"
    assert_empty(d)


@pytest.mark.anyio
async def test_taken_poll_past_its_deadline_waits_for_the_transaction() -> None:
    """A poll whose deadline passes while a transaction claims for it keeps waiting for that answer;
    handed nothing, it ends then (or claims itself, when a wake reaches it first)."""
    d = Dispatcher()
    with d.waiting(POOL, "agent-1", for_jobs=True, hand=_hand) as first:
        (poll,) = await waiting_in(first, timeout=0.01)
        assert d.take(POOL) is first
        await asyncio.sleep(0.05)
        assert not poll.done(), "past its deadline, still waiting for the answer"
        first.deliver(["job-1"])
        assert await poll is True and first.answer == ["job-1"]
    with d.waiting(POOL, "agent-1", for_jobs=True, hand=_hand) as again:
        (poll,) = await waiting_in(again, timeout=0.01)
        assert d.take(POOL) is again
        await asyncio.sleep(0.05)
        d.put_back(again)
        assert await poll is False and again.taken is False
    with d.waiting(POOL, "agent-1", for_jobs=True, hand=_hand) as woken_back:
        (poll,) = await waiting_in(woken_back, timeout=0.01)
        assert d.take(POOL) is woken_back
        await asyncio.sleep(0.05)
        d.put_back(woken_back)
        assert d.wake_pool(POOL) == 1
        assert await poll is True and woken_back.reason == "job"
    assert_empty(d)


@pytest.mark.anyio
async def test_put_back_returns_a_waiting_poll_to_the_head_of_its_queue_only() -> None:
    d = Dispatcher()
    with d.waiting(POOL, "agent-1", for_jobs=True, hand=_hand) as first:
        with d.waiting(POOL, "agent-2", for_jobs=True, hand=_hand) as second:
            polls = await waiting_in(first, second)
            assert d.take(POOL) is first
            d.put_back(first)
            assert d.take(POOL) is first, "back at the head, before the waiters that came after it"
            d.put_back(first)
            assert d.wake_pool(POOL) == 1 and first.reason == "job"
            assert d.take(POOL) is second
            polls[1].cancel()
            await asyncio.gather(*polls, return_exceptions=True)
        d.put_back(second)  # its poll has left: not queued again
        assert d.waiting_count(POOL) == 0
        assert d.take(POOL) is None, "woken waiters are not taken"
    assert_empty(d)


# --- pools known to have nothing queued (idle polls skip their read) ---------------------------------------


def test_a_pool_found_empty_is_known_empty_until_a_job_is_announced() -> None:
    d = Dispatcher()
    assert not d.known_empty(POOL)  # nothing read yet
    d.found_empty(POOL, time.monotonic(), d.queue_epoch)
    assert d.known_empty(POOL) and not d.known_empty(OTHER_POOL)
    assert d.wake_pool(OTHER_POOL) == 0  # a job for any pool, even with nobody waiting, voids what is known
    assert not d.known_empty(POOL)


def test_a_read_that_began_before_a_job_was_announced_proves_nothing() -> None:
    d = Dispatcher()
    epoch, began = d.queue_epoch, time.monotonic()
    d.wake_pool(POOL)  # a job committed while the read ran: the read may not have seen it
    d.found_empty(POOL, began, epoch)
    assert not d.known_empty(POOL)


def test_a_resync_voids_what_is_known() -> None:
    d = Dispatcher()
    d.found_empty(POOL, time.monotonic(), d.queue_epoch)
    d.wake_all()
    assert not d.known_empty(POOL)


def test_what_is_known_lapses() -> None:
    d = Dispatcher()
    d.found_empty(POOL, time.monotonic() - dispatch.EMPTY_FOR - 0.01, d.queue_epoch)
    assert not d.known_empty(POOL)  # a wake that never came is made up for by the next read
    d.found_empty(POOL, time.monotonic(), d.queue_epoch)
    assert d.known_empty(POOL)
