"""NOTIFY payloads: what a transaction announces, split under PostgreSQL's 8000-byte limit, read back."""

from __future__ import annotations

from outpost.store import events, notify


def test_nothing_to_announce_sends_nothing() -> None:
    assert notify.encode("r1", {}) == []
    assert notify.encode("r1", {"unrelated": 1}) == []


def test_pools_and_agents_round_trip() -> None:
    [payload] = notify.encode("r1", {events.POOLS: {"apool-a": 3}, events.AGENTS: {"agent-x", "agent-y"}})
    wake = notify.decode(payload)
    assert wake is not None
    assert (wake.origin, wake.pools, wake.agents) == ("r1", {"apool-a": 3}, {"agent-x", "agent-y"})


def test_large_announcements_are_split_below_the_limit_and_lose_nothing() -> None:
    pools = {f"apool-{i:036d}": i + 1 for i in range(300)}
    agents = {f"agent-{i:034d}" for i in range(300)}
    payloads = notify.encode("r1", {events.POOLS: pools, events.AGENTS: agents})
    assert len(payloads) > 1
    assert all(len(p.encode()) < 8000 for p in payloads)
    wakes = [notify.decode(p) for p in payloads]
    assert all(w is not None and w.origin == "r1" for w in wakes)
    assert {k: v for w in wakes if w for k, v in w.pools.items()} == pools
    assert {a for w in wakes if w for a in w.agents} == agents


def test_a_malformed_payload_is_ignored() -> None:
    assert notify.decode("not json") is None
    assert notify.decode('{"p": {}}') is None  # no origin
    assert notify.decode('{"o": "r", "p": {"x": "many"}}') is None


def test_libpq_url_drops_the_sqlalchemy_driver() -> None:
    url = notify.libpq_url("postgresql+psycopg://u:p%40ss@db:5433/outpost?sslmode=require")
    assert url == "postgresql://u:p%40ss@db:5433/outpost?sslmode=require"
