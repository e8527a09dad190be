"""Runs: creation, the per-workspace queue, and every status change (through the domain's table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.jobs import ACTIVE_JOB, JobStatus, Phase
from outpost.domain.runs import CANCELABLE, PhaseStatus, RunEvent, RunStatus, next_status
from outpost.domain.workspaces import ExecutionMode
from outpost.errors import Conflict, NotFound, Unprocessable
from outpost.ids import new_id
from outpost.store import events, inserts, logs
from outpost.store.pools import BUILTIN_POOL_ID, ensure_builtin_pool
from outpost.store.tables import Apply, ConfigurationVersion, Job, Plan, Run, Workspace
from outpost.timeutil import iso, utcnow

RUN_SOURCES = {
    "tfe-api",
    "tfe-configuration-version",
    "tfe-ui",
    "terraform+cloud",
    "terraform",
    "tfe-run-trigger",
    "tfe-infrastructure-lifecycle",
    "tfe-module",
}


@dataclass
class RunOptions:
    message: str = ""
    source: str = "tfe-api"
    is_destroy: bool = False
    refresh: bool = True
    refresh_only: bool = False
    plan_only: bool = False
    auto_apply: bool | None = None
    target_addrs: list[str] = field(default_factory=list)
    replace_addrs: list[str] = field(default_factory=list)
    user_id: str | None = None


def _stamp(stamps: dict[str, str | None], status: str) -> dict[str, str | None]:
    return {**stamps, f"{status.replace('_', '-')}-at": iso(utcnow())}


def transition(run: Run, event: RunEvent) -> None:
    new = next_status(RunStatus(run.status), event)
    run.status = new.value
    run.status_timestamps = _stamp(run.status_timestamps, new.value)


def set_phase(phase: Plan | Apply, status: PhaseStatus) -> None:
    phase.status = status.value
    phase.status_timestamps = _stamp(phase.status_timestamps, status.value)


# Every job's calls look up its run, plan and apply: statements built once (building a SQLAlchemy
# expression costs more than SQLite running it).
_RUN = select(Run).where(Run.id == bindparam("run_id"))
_RUN_LOCKED = _RUN.with_for_update()
_PLAN_OF = select(Plan).where(Plan.run_id == bindparam("run_id"))
_APPLY_OF = select(Apply).where(Apply.run_id == bindparam("run_id"))
# A job's start and finish change its run and its plan or apply: both read in one statement, the run locked.
_RUN_AND_PHASE = {
    table: select(Run, table)
    .join(table, table.run_id == Run.id)
    .where(Run.id == bindparam("run_id"))
    .with_for_update(of=Run)
    for table in (Plan, Apply)
}
_LAST_SEQ = select(func.coalesce(func.max(Run.seq), 0)).where(Run.workspace_id == bindparam("workspace_id"))


async def get(session: AsyncSession, run_id: str, *, lock: bool = False) -> Run:
    run = (await session.execute(_RUN_LOCKED if lock else _RUN, {"run_id": run_id})).scalar_one_or_none()
    if run is None:
        raise NotFound(f"Run {run_id!r} was not found.")
    return run


async def plan_of(session: AsyncSession, run_id: str) -> Plan:
    return (await session.execute(_PLAN_OF, {"run_id": run_id})).scalar_one()


async def apply_of(session: AsyncSession, run_id: str) -> Apply:
    return (await session.execute(_APPLY_OF, {"run_id": run_id})).scalar_one()


@dataclass(frozen=True)
class Created:
    run: Run
    plan: Plan
    apply: Apply


async def locked_with_phase(
    session: AsyncSession, run_id: str, table: type[Plan] | type[Apply]
) -> tuple[Run, Plan | Apply]:
    """The run, locked, with its plan or apply (`table`)."""
    row = (await session.execute(_RUN_AND_PHASE[table], {"run_id": run_id})).one_or_none()
    if row is None:
        raise NotFound(f"Run {run_id!r} was not found.")
    run, phase = row
    assert isinstance(phase, Plan | Apply)
    return run, phase


async def create(session: AsyncSession, workspace: Workspace, cv: ConfigurationVersion, options: RunOptions) -> Created:
    """A new run of `workspace`, which the caller has locked (runs of one workspace get their queue
    positions one at a time)."""
    if workspace.execution_mode == ExecutionMode.LOCAL.value:
        raise Unprocessable(
            f"Workspace {workspace.name} uses local execution: runs execute on your machine and Outpost "
            "only stores their state. Switch it to remote or agent execution to queue runs here.",
            title="local execution mode",
        )
    if cv.workspace_id != workspace.id:
        raise Unprocessable("The configuration version belongs to another workspace.")
    if cv.status != "uploaded":
        raise Unprocessable(
            f"Configuration version {cv.id} is {cv.status}: upload its archive before queuing a run.",
            title="configuration not uploaded",
        )
    seq = (await session.execute(_LAST_SEQ, {"workspace_id": workspace.id})).scalar_one()
    now = utcnow()
    run = Run(
        id=new_id("run"),
        workspace_id=workspace.id,
        configuration_version_id=cv.id,
        status=RunStatus.PENDING.value,
        message=options.message or "Queued manually via the API",
        source=options.source if options.source in RUN_SOURCES else "tfe-api",
        is_destroy=options.is_destroy,
        refresh=options.refresh,
        refresh_only=options.refresh_only,
        plan_only=options.plan_only or cv.speculative,
        auto_apply=workspace.auto_apply if options.auto_apply is None else options.auto_apply,
        target_addrs=options.target_addrs,
        replace_addrs=options.replace_addrs,
        has_changes=False,
        created_by_user_id=options.user_id,
        status_timestamps={},
        created_at=now,
        seq=seq + 1,
    )
    plan = Plan(id=new_id("plan"), run_id=run.id, status=PhaseStatus.PENDING.value, status_timestamps={})
    apply = Apply(id=new_id("apply"), run_id=run.id, status=PhaseStatus.PENDING.value, status_timestamps={})
    job = None
    if run.plan_only:
        # Speculative plans never hold the workspace: created queued, with their job (an insert, not an
        # insert and then an update: a burst of runs takes this path).
        _plan_queued(workspace, run, plan)
        job = _job(run.id, Phase.PLAN, await _pool_for(session, workspace))
    # The run row first: plans, applies and jobs reference it.
    await inserts.add_new(session, run, plan, apply, *([] if job is None else [job]))
    workspace.latest_run_id = run.id
    if job is not None:
        events.wake_pool(session, job.pool_id)
    else:
        await schedule(session, workspace)
    return Created(run, plan, apply)


async def _pool_for(session: AsyncSession, workspace: Workspace) -> str:
    if workspace.execution_mode == ExecutionMode.AGENT.value:
        if workspace.agent_pool_id is None:
            raise Unprocessable("The workspace uses agent execution but names no agent pool.")
        return workspace.agent_pool_id
    await ensure_builtin_pool(session)
    return BUILTIN_POOL_ID


def _job(run_id: str, phase: Phase, pool_id: str) -> Job:
    return Job(
        id=new_id("job"),
        run_id=run_id,
        phase=phase.value,
        pool_id=pool_id,
        status=JobStatus.QUEUED.value,
        attempt=0,
        created_at=utcnow(),
    )


async def _new_job(session: AsyncSession, run: Run, phase: Phase, pool_id: str) -> Job:
    job = _job(run.id, phase, pool_id)
    await inserts.add_new(session, job)
    events.wake_pool(session, pool_id)
    return job


def _plan_queued(workspace: Workspace, run: Run, plan: Plan) -> None:
    transition(run, RunEvent.QUEUE_PLAN)
    run.execution_mode = workspace.execution_mode
    set_phase(plan, PhaseStatus.QUEUED)


async def _queue_plan(session: AsyncSession, workspace: Workspace, run: Run) -> None:
    _plan_queued(workspace, run, await plan_of(session, run.id))
    await _new_job(session, run, Phase.PLAN, await _pool_for(session, workspace))


async def schedule(session: AsyncSession, workspace: Workspace) -> None:
    """Start the workspace's next pending run if nothing holds the workspace."""
    if workspace.current_run_id is not None or workspace.locked:
        return
    run = (
        await session.execute(
            select(Run)
            .where(
                Run.workspace_id == workspace.id,
                Run.status == RunStatus.PENDING.value,
                Run.plan_only.is_(False),
            )
            .order_by(Run.seq, Run.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if run is None:
        return
    workspace.current_run_id = run.id
    await _queue_plan(session, workspace, run)


async def release(session: AsyncSession, run: Run) -> None:
    """A run reached a final status: free its workspace for the next run."""
    if run.plan_only:
        return  # a speculative plan never holds its workspace (see create and schedule)
    workspace = await session.get(Workspace, run.workspace_id)
    assert workspace is not None
    if workspace.current_run_id == run.id:
        workspace.current_run_id = None
        await schedule(session, workspace)


async def error(session: AsyncSession, run: Run, message: str) -> None:
    """Error the run, with the reason in its log and error message, and free the workspace."""
    run.error_message = message
    for phase in (await plan_of(session, run.id), await apply_of(session, run.id)):
        if phase.status in (PhaseStatus.RUNNING.value, PhaseStatus.QUEUED.value):
            await logs.write_server_line(session, phase.id, f"Error: {message}")
            set_phase(phase, PhaseStatus.ERRORED)
            await logs.complete(session, phase.id)
        elif phase.status == PhaseStatus.PENDING.value:
            set_phase(phase, PhaseStatus.UNREACHABLE)
    await _end_jobs(session, run, JobStatus.ERRORED, message)
    transition(run, RunEvent.ERROR)
    await release(session, run)


async def _end_jobs(session: AsyncSession, run: Run, status: JobStatus, message: str) -> None:
    jobs = (
        await session.execute(
            select(Job).where(
                Job.run_id == run.id, Job.status.in_([JobStatus.QUEUED.value, *(s.value for s in ACTIVE_JOB)])
            )
        )
    ).scalars()
    for job in jobs:
        if job.agent_id:
            events.wake_agent(session, job.agent_id)
        job.status = status.value
        job.finished_at = utcnow()
        job.message = message


async def queue_apply(session: AsyncSession, run: Run) -> None:
    """Confirm a planned run and queue its apply, unless the workspace changed under it."""
    workspace = await session.get(Workspace, run.workspace_id)
    assert workspace is not None
    transition(run, RunEvent.CONFIRM)
    apply = await apply_of(session, run.id)
    if run.execution_mode and workspace.execution_mode != run.execution_mode:
        set_phase(apply, PhaseStatus.QUEUED)
        await error(
            session,
            run,
            f"The workspace's execution mode changed from {run.execution_mode} to {workspace.execution_mode} "
            "after this run was planned, so its plan cannot be applied. Queue a new run.",
        )
        return
    transition(run, RunEvent.QUEUE_APPLY)
    set_phase(apply, PhaseStatus.QUEUED)
    await _new_job(session, run, Phase.APPLY, await _pool_for(session, workspace))


async def confirm(session: AsyncSession, run: Run) -> None:
    if run.status != RunStatus.PLANNED.value:
        raise Conflict(f"Run {run.id} is {run.status}; only a planned run can be applied.", title="run not confirmable")
    await queue_apply(session, run)


async def discard(session: AsyncSession, run: Run) -> None:
    if run.status not in (RunStatus.PLANNED.value, RunStatus.PENDING.value):
        raise Conflict(
            f"Run {run.id} is {run.status}; only a pending or planned run can be discarded.",
            title="run not discardable",
        )
    transition(run, RunEvent.DISCARD)
    for phase in (await plan_of(session, run.id), await apply_of(session, run.id)):
        if phase.status in (PhaseStatus.PENDING.value, PhaseStatus.QUEUED.value):
            set_phase(phase, PhaseStatus.UNREACHABLE)
    await release(session, run)


async def cancel(session: AsyncSession, run: Run) -> None:
    """Cancel: a run no agent is executing ends at once; an executing one is interrupted by its agent."""
    if RunStatus(run.status) not in CANCELABLE:
        raise Conflict(f"Run {run.id} is {run.status} and cannot be canceled.", title="run not cancelable")
    active = (
        await session.execute(select(Job).where(Job.run_id == run.id, Job.status == JobStatus.RUNNING.value))
    ).scalar_one_or_none()
    if active is not None:
        if active.cancel_requested_at is None:
            active.cancel_requested_at = utcnow()
            if active.agent_id:
                events.wake_agent(session, active.agent_id)
        return
    await _finish_canceled(session, run, "The run was canceled before an agent started it.")


async def force_cancel(session: AsyncSession, run: Run, cooloff: timedelta) -> None:
    """End the run now; its agent kills terraform, and anything it sends later is refused (fenced)."""
    job = (
        await session.execute(select(Job).where(Job.run_id == run.id, Job.status == JobStatus.RUNNING.value))
    ).scalar_one_or_none()
    if job is None or job.cancel_requested_at is None:
        raise Conflict(
            "Force-cancel is available only after a cancel of an executing run.",
            title="run not force-cancelable",
        )
    if utcnow() < job.cancel_requested_at + cooloff:
        raise Conflict(
            f"Force-cancel is available {int(cooloff.total_seconds())} s after cancel.",
            title="run not force-cancelable yet",
        )
    job.force_cancel_requested_at = utcnow()
    if job.agent_id:
        events.wake_agent(session, job.agent_id)
    await _finish_canceled(session, run, "The run was force-canceled.")


async def stop(session: AsyncSession, run: Run, job: Job, reason: str) -> None:
    """Cancel an executing run now, for a reason of the server's own (a timeout): the agent kills terraform."""
    now = utcnow()
    job.cancel_requested_at = job.cancel_requested_at or now
    job.force_cancel_requested_at = now
    if job.agent_id:
        events.wake_agent(session, job.agent_id)
    run.error_message = reason
    await _finish_canceled(session, run, reason)


async def _finish_canceled(session: AsyncSession, run: Run, message: str) -> None:
    for phase in (await plan_of(session, run.id), await apply_of(session, run.id)):
        if phase.status in (PhaseStatus.QUEUED.value, PhaseStatus.RUNNING.value):
            await logs.write_server_line(session, phase.id, message)
            set_phase(phase, PhaseStatus.CANCELED)
            await logs.complete(session, phase.id)
        elif phase.status == PhaseStatus.PENDING.value:
            set_phase(phase, PhaseStatus.UNREACHABLE)
    await _end_jobs(session, run, JobStatus.CANCELED, message)
    transition(run, RunEvent.CANCEL)
    await release(session, run)


async def list_for_workspace(
    session: AsyncSession, workspace_id: str, *, offset: int, limit: int
) -> tuple[list[Run], int]:
    query = select(Run).where(Run.workspace_id == workspace_id)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await session.execute(query.order_by(Run.seq.desc()).offset(offset).limit(limit))).scalars()
    return list(rows), total


async def queue_position(session: AsyncSession, run: Run) -> int:
    if run.status != RunStatus.PENDING.value:
        return 0
    ahead = (
        await session.execute(
            select(func.count())
            .select_from(Run)
            .where(Run.workspace_id == run.workspace_id, Run.status == RunStatus.PENDING.value, Run.seq < run.seq)
        )
    ).scalar_one()
    return int(ahead) + 1
