"""What a job costs the database must not grow with what came before it.

A workspace keeps every run it ever had and an agent every job it ever held, so a statement on the job
path that reads them all gets slower, call after call, for the life of an installation, while a
benchmark on a fresh database shows nothing. SQLite counts the virtual machine instructions it runs
(its progress handler): one job's cycle through the store (create the run, the agent's standing jobs,
claim, start, finish) and one pass of the monitor's liveness and timeout checks are counted on a fresh
database and again after 3000 runs, jobs and exited agents of history.
SQLite only: the count is SQLite's; PostgreSQL gets the same indexes from the same migration.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import event, func, insert, select

from outpost.config import ServerConfig
from outpost.domain.jobs import JobOutcome, JobStatus
from outpost.domain.runs import RunStatus
from outpost.ids import new_id
from outpost.server.context import Outpost
from outpost.server.monitor import Monitor
from outpost.store import jobs, runs
from outpost.store.db import Database
from outpost.store.runs import RunOptions
from outpost.store.tables import Agent, ConfigurationVersion, Job, Run, Workspace
from outpost.timeutil import utcnow
from tests.integration.test_store_claims import LEASE, build_world, finish_all
from tests.support import databases

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.skipif(databases.is_postgres(), reason="counts SQLite's virtual machine instructions"),
]

HISTORY = 3000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Steps:
    """SQLite virtual machine instructions run on every connection of a Database."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        event.listen(db.engine.sync_engine, "connect", self._connected)

    def _connected(self, dbapi_connection: Any, _record: Any) -> None:
        raw: sqlite3.Connection = dbapi_connection.driver_connection._connection
        raw.set_progress_handler(self._tick, 1)

    def _tick(self) -> int:
        self.count += 1
        return 0  # 0: carry on


async def job_cycle(db: Database, workspace_id: str, agent_id: str) -> None:
    async with db.write() as s:
        workspace = (await s.execute(select(Workspace).where(Workspace.id == workspace_id))).scalar_one()
        cv = (
            await s.execute(select(ConfigurationVersion).where(ConfigurationVersion.workspace_id == workspace_id))
        ).scalar_one()
        await runs.create(s, workspace, cv, RunOptions(plan_only=True))
    async with db.read() as s:
        await jobs.agent_jobs(s, agent_id)
    async with db.write() as s:
        claimed = await jobs.claim(s, agent_id, LEASE)
    assert claimed is not None
    await finish_all(db, [claimed])
    async with db.read() as s:
        assert await jobs.agent_jobs(s, agent_id) is not None
    # The monitor's passes that read the database (its own process's pings and wake-ups left out).
    monitor = Monitor(cast(Outpost, SimpleNamespace(db=db, config=ServerConfig())))
    await monitor.mark_unknown()
    await monitor.mark_errored()
    await monitor.requeue_unstarted()
    await monitor.enforce_timeouts()


async def add_history(db: Database, workspace_id: str, cv_id: str, pool_id: str, agent_id: str) -> None:
    """HISTORY finished runs of the workspace, each with a finished plan job of the agent, some of them
    force-canceled long ago (a standing force-cancel lapses 10 minutes after the job ended); HISTORY
    agents of the pool that exited long ago."""
    old = utcnow() - timedelta(days=30)
    async with db.write() as s:
        template = (await s.execute(select(Agent).where(Agent.id == agent_id))).scalar_one()
        await s.execute(
            insert(Agent),
            [
                {
                    "id": new_id("agent"),
                    "pool_id": pool_id,
                    "token_id": template.token_id,
                    "name": f"gone-{i}",
                    "status": "exited",
                    "capacity": 1,
                    "session_hash": new_id("hash"),
                    "created_at": old,
                    "last_ping_at": old,
                    "status_changed_at": old,
                }
                for i in range(HISTORY)
            ],
        )
        last_seq = select(func.coalesce(func.max(Run.seq), 0)).where(Run.workspace_id == workspace_id)
        first_seq = (await s.execute(last_seq)).scalar_one() + 1
        run_rows = [
            {
                "id": new_id("run"),
                "workspace_id": workspace_id,
                "configuration_version_id": cv_id,
                "status": RunStatus.PLANNED_AND_FINISHED.value,
                "source": "tfe-api",
                "plan_only": True,
                "status_timestamps": {},
                "target_addrs": [],
                "replace_addrs": [],
                "created_at": old,
                "seq": first_seq + i,
            }
            for i in range(HISTORY)
        ]
        await s.execute(insert(Run), run_rows)
        await s.execute(
            insert(Job),
            [
                {
                    "id": new_id("job"),
                    "run_id": r["id"],
                    "phase": "plan",
                    "pool_id": pool_id,
                    "status": JobStatus.FINISHED.value,
                    "agent_id": agent_id,
                    "attempt": 1,
                    "created_at": old,
                    "assigned_at": old,
                    "started_at": old,
                    "finished_at": old,
                    "force_cancel_requested_at": old if i % 10 == 0 else None,
                    "outcome": JobOutcome.SUCCEEDED.value,
                }
                for i, r in enumerate(run_rows)
            ],
        )


async def test_a_job_costs_the_same_after_thousands_before_it(tmp_path: Path) -> None:
    # One run queued beforehand: each cycle claims the job queued before its own (the oldest first).
    world = await build_world(tmp_path, capacities=[1], run_count=1)
    db = world.db
    try:
        steps = Steps(db)
        await db.engine.dispose()  # new connections, so that every one is counted
        async with db.read() as s:
            workspace_id, cv_id = (
                await s.execute(select(ConfigurationVersion.workspace_id, ConfigurationVersion.id))
            ).one()
        agent_id = world.agent_ids[0]

        await job_cycle(db, workspace_id, agent_id)  # warm: the first run of a workspace is no measure
        steps.count = 0
        await job_cycle(db, workspace_id, agent_id)
        fresh = steps.count

        await add_history(db, workspace_id, cv_id, world.pool_id, agent_id)
        steps.count = 0
        await job_cycle(db, workspace_id, agent_id)
        aged = steps.count
    finally:
        await db.dispose()
    assert fresh > 100, "the counter counts"
    # An index search deeper by a level or two is allowed; a read of the history (thousands of rows, ten
    # or more instructions each) is not.
    assert aged < fresh * 1.2, f"one job's cycle: {fresh} instructions on a fresh database, {aged} after {HISTORY}"
