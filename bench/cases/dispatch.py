"""Dispatch latency with 1, 100 and 1000 idle agents connected, against a plain ping in the same run."""

from __future__ import annotations

from typing import Any

import httpx

from bench.cases.common import Target, dispatch_once, ping_rtts, target
from bench.fleet import API, Fleet
from bench.stats import median, summary_ms


async def run(url: str, org: str, token: str, *, agent_counts: list[int], samples: int) -> dict[str, Any]:
    api = API(url, token)
    results: dict[str, Any] = {}
    try:
        for count in agent_counts:
            t = await target(api, org, f"dispatch-{count}")
            fleet = Fleet(url, t.pool_token)
            try:
                results[str(count)] = await _measure(api, t, fleet, count, samples)
            except (TimeoutError, httpx.HTTPError) as exc:
                # The server could not hold this many agents (they failed to register or poll in time, or a
                # dispatch timed out): recorded as such; more agents would fail the same way, slower.
                results[str(count)] = {
                    "agents": count,
                    "error": f"{type(exc).__name__}: {exc}",
                    "errors": len(fleet.errors),
                    "first_errors": fleet.errors[:3],
                }
                break
            finally:
                await fleet.close()
    finally:
        await api.close()
    return results


async def _measure(api: API, t: Target, fleet: Fleet, count: int, samples: int) -> dict[str, Any]:
    await fleet.connect(count)
    for _ in range(5):  # warm-up: connections, caches
        await dispatch_once(t, fleet)
    measured = [await dispatch_once(t, fleet) for _ in range(samples)]
    # The ping is measured interleaved with the same fleet connected, so both see the same load.
    pings = await ping_rtts(api, samples)
    return {
        "agents": count,
        "from_creation_answer": summary_ms([d.from_return for d in measured]),
        "from_creation_request": summary_ms([d.from_send for d in measured]),
        "ping": summary_ms(pings),
        "p50_over_ping_p50": round(median([d.from_return for d in measured]) / median(pings), 2),
        "errors": len(fleet.errors),
    }
