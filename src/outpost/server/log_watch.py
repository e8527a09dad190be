"""How often an agent ships a log: every 100 ms while someone reads it, every 500 ms otherwise.

Shipping costs a request (a few milliseconds of CPU on the server and on the agent, on the machine where
terraform runs) however few bytes it carries. A log nobody reads needs none of that latency, so the
append's answer tells the agent how long to gather output before the next one, as GitLab's runner is told
its trace update interval. Readers (the log-read URL, the run page's live stream) stamp the phase row, so
the agent learns of them on any replica: a reader who arrives waits at most one slow batch for the pace to
quicken, and sees everything stored before that at once.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

WATCHED_INTERVAL = 0.1  # seconds between appends while someone reads (the agent's own default)
UNWATCHED_INTERVAL = 0.5
# A reader counts as present this long after its last read, so one that slows its polling while the
# output is quiet still counts: go-tfe's log reader (the terraform CLI's) backs off from 0.5 s to 2 s
# between empty reads, the run page's stream reads every 0.5 s.
WATCH_WINDOW = timedelta(seconds=10)
STAMP_EVERY = 2.0  # seconds: one process stamps a log at most this often, whatever its readers


def interval(watched_at: datetime | None, now: datetime) -> float:
    """Seconds the agent should gather output before its next append."""
    if watched_at is not None and now - watched_at < WATCH_WINDOW:
        return WATCHED_INTERVAL
    return UNWATCHED_INTERVAL


class LogReaders:
    """Which logs this process stamped recently, so that readers polling hard cost one write per log
    every couple of seconds rather than one per read."""

    def __init__(self, *, every: float = STAMP_EVERY, limit: int = 10_000) -> None:
        self.every = every
        self.limit = limit
        self._stamped: dict[str, float] = {}

    def due(self, log_id: str) -> bool:
        """Whether a read of `log_id` now should stamp it (and, if so, it counts as stamped)."""
        now = time.monotonic()
        last = self._stamped.get(log_id)
        if last is not None and now - last < self.every:
            return False
        if len(self._stamped) >= self.limit:
            self._stamped = {k: t for k, t in self._stamped.items() if now - t < self.every}
        self._stamped[log_id] = now
        return True
