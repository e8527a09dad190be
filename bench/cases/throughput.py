"""Throughput: jobs dispatched and finished per second, with the runs queued before the agents connect."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.cases.common import target
from bench.fleet import API, Fleet


async def run(urls: list[str], org: str, token: str, *, jobs: int, agents: int) -> dict[str, Any]:
    """`urls`: one server, or several replicas sharing a database (agents spread over them)."""
    api = API(urls[0], token)
    try:
        t = await target(api, org, f"throughput-{len(urls)}")
        gate = asyncio.Semaphore(32)

        async def queue() -> str:
            async with gate:
                return await api.run(t.workspace_id, t.cv_id)

        run_ids = await asyncio.gather(*(queue() for _ in range(jobs)))
        fleets = [Fleet(url, t.pool_token) for url in urls]
        try:
            await asyncio.gather(*(f.connect(agents // len(urls), settle=False) for f in fleets))
            deadline = time.monotonic() + 600
            while sum(len(f.finished) for f in fleets) < jobs:
                if time.monotonic() > deadline:
                    raise TimeoutError("the jobs did not all finish within 10 minutes")
                await asyncio.sleep(0.01)
            received = [at for f in fleets for at in f.received.values()]
            finished = [at for f in fleets for at in f.finished.values()]
            claimed = [r for f in fleets for r in f.received]
            elapsed = max(finished) - min(received)
            return {
                "replicas": len(urls),
                "agents": agents,
                "jobs": jobs,
                "seconds": round(elapsed, 2),
                "jobs_per_second": round(jobs / elapsed, 1),
                "each_job_once": sorted(claimed) == sorted(run_ids),
                "errors": sum(len(f.errors) for f in fleets),
            }
        finally:
            await asyncio.gather(*(f.close() for f in fleets))
    finally:
        await api.close()
