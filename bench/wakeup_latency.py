"""Wake-up latency across replicas: how long after a run is created on replica B does the agent
long-polling replica A receive its job? Two real servers on PostgreSQL, a real agent protocol client,
runs created through the real API; the fallbacks (poll timeout, monitor sweep) are a minute away, so
every wake-up measured here came through LISTEN/NOTIFY.

    OUTPOST_TEST_DATABASE=postgresql://USER:PASSWORD@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.wakeup_latency --rounds 50

USER must be allowed to create databases (scripts/postgres-for-tests up makes such a role).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import CONFIGS
from tests.replicas.conftest import Replicas
from tests.support import databases

from outpost.agent.client import Backoff, Client


async def measure(replicas: Replicas, org: str, token: str, rounds: int, creator_index: int) -> list[float]:
    creator = replicas.api(creator_index, token)
    client = Client(replicas.servers[0].url, backoff=Backoff(base=0.05, cap=0.5))
    try:
        pool = creator.create_pool(org, "bench")
        _, pool_token = creator.create_agent_token(pool["id"], "bench")
        ws = creator.create_workspace(org, "bench", execution_mode="agent", agent_pool_id=pool["id"])
        cv = creator.upload_configuration(ws["id"], CONFIGS / "counter")
        await client.register(pool_token, "bench", 1)
        latencies = []
        for _ in range(rounds):
            poll = asyncio.create_task(client.poll(1, [], {}, 60))
            await asyncio.sleep(0.2)  # the poll reaches its wait
            await asyncio.to_thread(creator.create_run, ws["id"], cv, plan_only=True)
            created = time.monotonic()
            answer = await asyncio.wait_for(poll, 30)
            latencies.append(time.monotonic() - created)
            [job] = answer["jobs"]
            await client.start(job["id"], job["token"])
            await client.finish(job["id"], job["token"], {"outcome": "succeeded", "log_size": 0})
        await client.deregister()
        return latencies
    finally:
        await client.close()
        creator.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--same-replica", action="store_true", help="create the runs on the polled replica (baseline)")
    args = parser.parse_args()
    if not databases.is_postgres():
        print("Set OUTPOST_TEST_DATABASE to a postgresql:// URL (see this module's docstring).", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tools").mkdir()
        args_ = ("--no-builtin-agent", "--long-poll-timeout", "60", "--monitor-interval", "60")
        replicas = Replicas(root, root / "tools", args_, databases.new_database(root / "replica0"))
        try:
            replicas.start(0)
            replicas.start(1)
            org, token = replicas.organization()
            latencies = asyncio.run(measure(replicas, org, token, args.rounds, 0 if args.same_replica else 1))
        finally:
            replicas.stop()
            databases.drop_created()
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[max(0, int(len(ms) * 0.95) - 1)]
    where = "same-replica" if args.same_replica else "cross-replica"
    print(
        f"{where} wake-up over {len(ms)} runs: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
