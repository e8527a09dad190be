"""New rows through `outpost.store.inserts.add_new`: written as given, with the columns' defaults, and the
objects then in the session as if loaded (a query returns the same object; a change is an UPDATE)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from outpost.ids import new_id
from outpost.store import inserts
from outpost.store.tables import Plan, Run
from outpost.timeutil import utcnow
from tests.integration.test_store_claims import build_world

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_rows_are_written_with_defaults_and_objects_are_attached(tmp_path: Path) -> None:
    world = await build_world(tmp_path, capacities=[1], run_count=1)
    db = world.db
    try:
        async with db.read() as s:
            template = (await s.execute(select(Run).where(Run.id == world.run_ids[0]))).scalar_one()
            workspace_id, cv_id = template.workspace_id, template.configuration_version_id
        async with db.write() as s:
            run = Run(
                id=new_id("run"),
                workspace_id=workspace_id,
                configuration_version_id=cv_id,
                status="pending",
                source="tfe-api",
                created_at=utcnow(),
                seq=99,
            )
            plan = Plan(id=new_id("plan"), run_id=run.id, status="pending")
            await inserts.add_new(s, run, plan)
            # Persistent, nothing pending, nothing expired: every column readable without a query.
            for obj in (run, plan):
                state = inspect(obj)
                assert state.persistent and not state.expired_attributes and not state.modified
            assert run.message == "" and run.refresh is True and run.target_addrs == [] and run.error_message is None
            assert plan.resource_additions == 0 and plan.log_complete is False and plan.status_timestamps == {}
            # A query in the same session returns this very object.
            assert (await s.execute(select(Run).where(Run.id == run.id))).scalar_one() is run
            run.status = "plan_queued"  # an ordinary change: an UPDATE at the flush
            run_id, plan_id = run.id, plan.id
        async with db.read() as s:
            stored = (await s.execute(select(Run).where(Run.id == run_id))).scalar_one()
            assert (stored.status, stored.message, stored.refresh, stored.seq) == ("plan_queued", "", True, 99)
            assert stored.replace_addrs == [] and stored.status_timestamps == {}
            stored_plan = (await s.execute(select(Plan).where(Plan.id == plan_id))).scalar_one()
            assert (stored_plan.run_id, stored_plan.has_changes, stored_plan.log_size) == (run_id, False, 0)
    finally:
        await db.dispose()
