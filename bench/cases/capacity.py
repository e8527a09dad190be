"""Capacity: idle agents held by one server process with default heartbeats, at growing fleet sizes:
the server's CPU share and memory, errors, and dispatch latency while they are connected."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from bench.cases.common import Target, dispatch_once, target
from bench.fleet import API, Fleet
from bench.servers import Meter
from bench.stats import summary_ms

CONNECT_BASE = 30.0  # seconds, plus 1 s per 20 agents (registering is a write each; 45 a second here)


async def run(
    url: str, server_pid: int, org: str, token: str, *, sizes: list[int], window: float, dispatches: int
) -> dict[str, Any]:
    api = API(url, token)
    meter = Meter(server_pid)
    meter.start()
    # The simulated fleet runs in this process: its own cost bounds the sizes this machine can show.
    fleet_meter = Meter(os.getpid())
    results: dict[str, Any] = {}
    try:
        t = await target(api, org, "capacity")
        fleet = Fleet(url, t.pool_token)
        try:
            for size in sizes:
                try:
                    results[str(size)] = await _hold(
                        t, fleet, meter, fleet_meter, size, window=window, dispatches=dispatches
                    )
                except (TimeoutError, httpx.HTTPError) as exc:
                    # This process could not hold the fleet (agents failed to register or poll in time, or
                    # a dispatch timed out): larger sizes would only fail the same way, slower.
                    results[str(size)] = {
                        "agents": size,
                        "error": f"{type(exc).__name__}: {exc}",
                        "errors": len(fleet.errors),
                        "first_errors": fleet.errors[:3],
                        "server": meter.read(),
                    }
                    break
        finally:
            await fleet.close()
    finally:
        await api.close()
    return results


async def _hold(
    t: Target, fleet: Fleet, meter: Meter, fleet_meter: Meter, size: int, *, window: float, dispatches: int
) -> dict[str, Any]:
    # A process that cannot hold the fleet fails here: registrations time out and retry without end.
    await asyncio.wait_for(fleet.connect(size - len(fleet.clients), concurrency=64), CONNECT_BASE + size / 20)
    errors_before = len(fleet.errors)
    await asyncio.sleep(min(window, 10))  # heartbeats spread over their interval first
    meter.start()
    fleet_meter.start()
    measured = []
    for _ in range(dispatches):
        measured.append(await dispatch_once(t, fleet, settle=False))
        await asyncio.sleep(window / dispatches)
    usage = meter.read()
    return {
        "agents": size,
        "server_cpu_percent_of_one_core": usage["cpu_percent"],
        "fleet_cpu_percent_of_one_core": fleet_meter.read()["cpu_percent"],
        "server_rss_mb": usage["rss_mb"],
        "dispatch": summary_ms([d.from_return for d in measured]),
        "errors": len(fleet.errors) - errors_before,
        "first_errors": fleet.errors[errors_before : errors_before + 3],
    }
