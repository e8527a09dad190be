"""What several cases share: a pool with a workspace and a tiny configuration, timed dispatches."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.fleet import API, Fleet

TINY = {"main.tf": 'output "hello" {\n  value = "world"\n}\n'}


@dataclass
class Target:
    """Where dispatches go: a workspace of a pool, with a configuration to queue runs of."""

    api: API
    org: str
    pool_id: str
    pool_token: str
    workspace_id: str
    cv_id: str


async def target(api: API, org: str, name: str) -> Target:
    pool_id, pool_token = await api.pool_and_token(org, name)
    workspace_id = await api.workspace(org, name, pool_id)
    cv_id = await api.configuration(workspace_id, TINY)
    return Target(api, org, pool_id, pool_token, workspace_id, cv_id)


@dataclass
class Dispatch:
    from_return: float  # seconds from the run creation's answer to the agent receiving the job
    from_send: float  # seconds from sending the creation request


async def dispatch_once(t: Target, fleet: Fleet, *, settle: bool = True) -> Dispatch:
    """Queue one speculative run and time its arrival at an agent. Speculative runs never hold the
    workspace, so every run queues its plan at once."""
    sent = time.perf_counter()
    run_id = await t.api.run(t.workspace_id, t.cv_id)
    returned = time.perf_counter()
    arrived = await asyncio.wait_for(fleet.arrival(run_id), 30)
    if settle:
        # The agent finishes the job and polls again before the next measurement.
        deadline = time.monotonic() + 30
        while run_id not in fleet.finished or fleet.polling < len(fleet.clients):
            if time.monotonic() > deadline:
                raise TimeoutError("the fleet did not settle after a dispatch")
            await asyncio.sleep(0.005)
    return Dispatch(from_return=arrived - returned, from_send=arrived - sent)


async def ping_rtts(api: API, count: int) -> list[float]:
    """Round trips of GET /api/v2/ping on the same keep-alive client as the API calls."""
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        resp = await api.http.get(f"{api.url}/api/v2/ping")
        samples.append(time.perf_counter() - t0)
        assert resp.status_code == 204
    return samples
