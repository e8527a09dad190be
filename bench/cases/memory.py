"""Memory: the resident set of an idle `outpost agent` (registered, long-polling, heartbeating)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil

from bench.cases.overhead import start_agent, wait_idle
from outpost.api_client import OutpostAPI


def run(url: str, org: str, token: str, tools: Path, work: Path, *, settle: float) -> dict[str, Any]:
    api = OutpostAPI(url, token)
    pool = api.create_pool(org, "memory")
    _, pool_token = api.create_agent_token(pool["id"], "memory")
    agent = start_agent(url, pool_token, tools, work / "agent")
    try:
        wait_idle(api, pool["id"], agent)
        time.sleep(settle)
        process = psutil.Process(agent.pid)
        family = [process, *process.children(recursive=True)]
        return {
            "idle_agent_rss_mb": round(process.memory_info().rss / 2**20, 1),
            "idle_agent_processes": len(family),
            "idle_agent_uss_mb": round(process.memory_full_info().uss / 2**20, 1),
        }
    finally:
        agent.stop()
        api.close()
