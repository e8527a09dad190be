"""Ramp-up: N idle agents and N runs queued at once; the time until every run has started.

Terraform Cloud's agents poll every 30 s and a 120-agent pool was reported to take over 3 minutes.

The runs come from as many API clients as runs, each on its own connection, as from that many CI jobs.
Not from one client with a pool of connections: httpcore's pool matches queued requests to connections
in quadratic time (encode/httpcore#1035), which took 43 % of this process's CPU, on the same two cores
as the server, to queue 120 runs at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.cases.common import ping_rtts, target
from bench.fleet import API, Fleet
from bench.stats import median


async def run(url: str, org: str, token: str, *, agents: int, rounds: int) -> dict[str, Any]:
    api = API(url, token)
    try:
        t = await target(api, org, f"ramp-{agents}")
        fleet = Fleet(url, t.pool_token)
        creators = [API(url, token) for _ in range(agents)]
        try:
            await fleet.connect(agents)
            await asyncio.gather(*(ping_rtts(c, 1) for c in creators))  # each connected before the clock starts
            times = []
            for _ in range(rounds):
                begin = time.perf_counter()
                run_ids = await asyncio.gather(*(c.run(t.workspace_id, t.cv_id) for c in creators))
                queued = time.perf_counter()
                deadline = time.monotonic() + 120
                while not all(r in fleet.started for r in run_ids):
                    if time.monotonic() > deadline:
                        raise TimeoutError("not every run started within 120 s")
                    await asyncio.sleep(0.002)
                times.append((max(fleet.started[r] for r in run_ids) - begin, queued - begin))
                deadline = time.monotonic() + 60
                while fleet.polling < agents or not all(r in fleet.finished for r in run_ids):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the fleet did not settle after a round")
                    await asyncio.sleep(0.01)
            return {
                "agents": agents,
                "runs": agents,
                "rounds": rounds,
                "all_started_s": {
                    "median": round(median([a for a, _ in times]), 3),
                    "max": round(max(a for a, _ in times), 3),
                },
                "queueing_runs_took_s": round(median([q for _, q in times]), 3),
                # From the last creation's answer: how long the agents took once every run existed.
                "all_started_after_last_queued_s": round(median([a - q for a, q in times]), 3),
                "errors": len(fleet.errors),
            }
        finally:
            await asyncio.gather(*(c.close() for c in creators))
            await fleet.close()
    finally:
        await api.close()
