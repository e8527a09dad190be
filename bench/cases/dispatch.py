"""Dispatch latency with 1, 100 and 1000 idle agents connected, against a plain ping in the same run."""

from __future__ import annotations

from typing import Any

from bench.cases.common import dispatch_once, ping_rtts, target
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
                await fleet.connect(count)
                for _ in range(5):  # warm-up: connections, caches
                    await dispatch_once(t, fleet)
                measured = [await dispatch_once(t, fleet) for _ in range(samples)]
                # The ping is measured interleaved with the same fleet connected, so both see the same load.
                pings = await ping_rtts(api, samples)
                from_return = summary_ms([d.from_return for d in measured])
                results[str(count)] = {
                    "agents": count,
                    "from_creation_answer": from_return,
                    "from_creation_request": summary_ms([d.from_send for d in measured]),
                    "ping": summary_ms(pings),
                    "p50_over_ping_p50": round(median([d.from_return for d in measured]) / median(pings), 2),
                    "errors": len(fleet.errors),
                }
            finally:
                await fleet.close()
    finally:
        await api.close()
    return results
