"""The agent gives its signal handlers back before its event loop closes.

asyncio's loop closes its wake-up pipe first and removes its signal handlers after: a signal in between
(the built-in agent gets two SIGTERMs 50 ms apart when the server stops) is written to a closed
descriptor, and Python prints "Exception ignored ... Bad file descriptor" with a traceback into the log.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from outpost.agent.main import Agent


def test_signal_handlers_are_handed_over_before_the_loop_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    async def quick_main(self: Agent) -> int:
        return 0

    async def check() -> tuple[int, int, Any]:
        code = await agent.run()
        # Still inside the loop: its wake-up descriptor must no longer be the one signals write to.
        wakeup = signal.set_wakeup_fd(-1)
        return code, wakeup, signal.getsignal(signal.SIGTERM)

    monkeypatch.setattr(Agent, "_main", quick_main)
    agent = Agent.__new__(Agent)  # no configuration or client needed: only run()'s handling of signals
    agent.signals = 0
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code, wakeup, handler = asyncio.run(check())
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
    assert code == 0
    assert wakeup == -1, "the loop's wake-up descriptor was still set when run() returned"
    assert getattr(handler, "__module__", "") == "outpost.agent.main", "a late signal means: exit now"
