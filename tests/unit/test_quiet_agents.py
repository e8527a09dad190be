"""The table of quiet agents (outpost.server.quiet): what makes an entry, and what ends it."""

from __future__ import annotations

import time

from outpost.server.quiet import QuietAgents


def test_an_entry_answers_for_its_session_and_address_until_forgotten() -> None:
    quiet = QuietAgents(ttl=60)
    quiet.add("h1", "agent-1", "at-1", "10.0.0.1", epoch=quiet.epoch)
    entry = quiet.get("h1", "10.0.0.1")
    assert entry is not None and entry.agent_id == "agent-1" and entry.token_id == "at-1"
    assert quiet.get("h2", "10.0.0.1") is None
    quiet.forget("agent-1")
    assert quiet.get("h1", "10.0.0.1") is None and len(quiet) == 0


def test_a_read_that_began_before_a_forget_makes_nothing_quiet() -> None:
    quiet = QuietAgents(ttl=60)
    before = quiet.epoch  # a heartbeat starts its read
    quiet.forget("agent-1")  # a change is announced meanwhile (for this agent or another)
    quiet.add("h1", "agent-1", "at-1", None, epoch=before)
    assert quiet.get("h1", None) is None


def test_another_address_or_an_old_entry_goes_back_to_the_database() -> None:
    quiet = QuietAgents(ttl=60)
    quiet.add("h1", "agent-1", "at-1", "10.0.0.1", epoch=quiet.epoch)
    assert quiet.get("h1", "10.0.0.2") is None and len(quiet) == 0  # the write path records the new address
    short = QuietAgents(ttl=0.01)
    short.add("h1", "agent-1", "at-1", None, epoch=short.epoch)
    time.sleep(0.02)
    assert short.get("h1", None) is None and len(short) == 0
    full = QuietAgents(ttl=60, limit=2)
    for n in range(3):
        full.add(f"h{n}", f"agent-{n}", "at", None, epoch=full.epoch)
    assert len(full) == 1  # cleared at the limit, then the newest added
