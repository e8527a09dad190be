"""Jobs: the atomic claim, the job credential that fences late agents off, start and finish."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import Select, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from outpost.domain.agents import LIVE, AgentStatus
from outpost.domain.jobs import ACTIVE_JOB, JOB_RIGHTS, JobOutcome, JobRight, JobStatus, Phase, check_job_transition
from outpost.domain.runs import PhaseStatus, RunEvent, RunStatus
from outpost.encryption import Encryptor
from outpost.errors import Conflict, Forbidden, NotFound
from outpost.ids import TokenKind, hash_secret, new_secret, secrets_match
from outpost.store import agents as agents_store
from outpost.store import blobs, configs, events, logs, state
from outpost.store import runs as runs_store
from outpost.store.tables import Agent, AgentToken, Apply, Blob, Job, Plan, Run, Variable, Workspace
from outpost.store.workspaces import plain_value
from outpost.timeutil import utcnow


@dataclass(frozen=True)
class Claimed:
    job_id: str
    token: str
    phase: str
    run_id: str
    attempt: int
    queued_at: datetime | None = None  # for the dispatch latency metric
    redelivered: bool = False  # assigned before; this answer carries a fresh credential


class JobFenced(Forbidden):
    """The job credential is no longer valid."""


# The claim runs on every dispatch: its statements are built once (building a SQLAlchemy expression costs
# more than the database running it). Bound names differ from the columns: an UPDATE reserves those.
_QUEUED = JobStatus.QUEUED.value
_OLDEST_QUEUED = (
    select(Job.id)
    .where(Job.pool_id == bindparam("claim_pool"), Job.status == _QUEUED)
    .order_by(Job.created_at, Job.id)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_CLAIM = (
    update(Job)
    .where(Job.id == _OLDEST_QUEUED, Job.status == _QUEUED)
    .values(
        status=JobStatus.ASSIGNED.value,
        agent_id=bindparam("claimant"),
        token_hash=bindparam("credential_hash"),
        attempt=Job.attempt + 1,
        assigned_at=bindparam("now"),
        lease_expires_at=bindparam("lease_until"),
    )
    .returning(Job.id, Job.phase, Job.run_id, Job.attempt, Job.created_at)
)


async def claim(
    session: AsyncSession, agent_id: str, lease: timedelta, *, locked: tuple[Agent, int] | None = None
) -> Claimed | None:
    """Give the oldest queued job of the agent's pool to the agent, if it has a free slot.

    The agent row is locked first, so racing requests of one agent cannot exceed its capacity; the job
    is taken by one UPDATE whose WHERE re-checks `status = 'queued'` (with SKIP LOCKED on PostgreSQL),
    so a job is never claimed twice, whatever the number of agents and replicas. `locked`: the agent, and
    its active job count, read by the caller after it locked the agent row in this same transaction.
    """
    if locked is None:
        agent = (await session.execute(select(Agent).where(Agent.id == agent_id).with_for_update())).scalar_one()
        active = await agents_store.active_job_count(session, agent_id)
    else:
        agent, active = locked
    if active >= agent.capacity:
        return None
    secret = new_secret(TokenKind.JOB)
    now = utcnow()
    # On the connection, past the ORM: no Job of this transaction is loaded, and RETURNING gives the rest.
    connection = await session.connection()
    params = {
        "claim_pool": agent.pool_id,
        "claimant": agent_id,
        "credential_hash": hash_secret(secret),
        "now": now,
        "lease_until": now + lease,
    }
    row = (await connection.execute(_CLAIM, params)).first()
    if row is None:
        return None
    agents_store.set_status(agent, AgentStatus.BUSY, now)
    # Announced: every replica forgets the agent was quiet (outpost.server.quiet), so its next poll, on
    # whichever replica, reads its jobs and delivers this one again if the answer is lost.
    events.wake_agent(session, agent_id)
    return Claimed(row.id, secret, row.phase, row.run_id, row.attempt, queued_at=row.created_at)


def requeue(session: AsyncSession, job: Job) -> None:
    """Back to the queue: the job was assigned but never started (its agent left or went silent)."""
    job.status = JobStatus.QUEUED.value
    job.agent_id = None
    job.token_hash = None
    job.assigned_at = None
    job.lease_expires_at = None
    events.wake_pool(session, job.pool_id)


async def requeue_unstarted(session: AsyncSession, agent_id: str) -> int:
    jobs = (
        (
            await session.execute(
                select(Job).where(Job.agent_id == agent_id, Job.status == JobStatus.ASSIGNED.value).with_for_update()
            )
        )
        .scalars()
        .all()
    )
    for job in jobs:
        requeue(session, job)
    return len(jobs)


async def redeliver(session: AsyncSession, job_id: str, agent_id: str) -> Claimed | None:
    """Hand an undelivered job to its agent again, with a new credential (the old one was never seen)."""
    secret = new_secret(TokenKind.JOB)
    row = (
        await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.agent_id == agent_id, Job.status == JobStatus.ASSIGNED.value)
            .values(token_hash=hash_secret(secret))
            .returning(Job.id, Job.phase, Job.run_id, Job.attempt)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if row is None:
        return None
    return Claimed(row.id, secret, row.phase, row.run_id, row.attempt, redelivered=True)


_Row = TypeVarTuple("_Row")


def _with_holder(query: Select[*_Row]) -> Select[*_Row]:
    """`query` of job `job_id` with the agent holding it and that agent's token joined in."""
    return (
        query.outerjoin(Agent, Agent.id == Job.agent_id)
        .outerjoin(AgentToken, AgentToken.id == Agent.token_id)
        .where(Job.id == bindparam("job_id"))
    )


_JOB = _with_holder(select(Job, Agent.status, AgentToken.id, AgentToken.revoked_at))
_JOB_LOCKED = _JOB.with_for_update(of=Job)


async def authenticate(session: AsyncSession, job_id: str, secret: str, right: JobRight, *, lock: bool = False) -> Job:
    """The job, if `secret` is its current credential, the job is active, its agent may still work, and
    the job's phase holds `right`. A credential never reaches another job (404, as if it did not exist).

    One statement (every upload of a job passes here): the holding agent and its token are joined in."""
    row = (await session.execute(_JOB_LOCKED if lock else _JOB, {"job_id": job_id})).first()
    if row is None:
        raise NotFound(f"Job {job_id!r} was not found.")
    job, agent_status, token_id, revoked_at = row
    _admit(job_id, secret, right, job.token_hash, job.status, job.phase, agent_status, token_id, revoked_at)
    return job


# `authenticate` for the log append, the call a running job makes most: the job's columns rather than an
# ORM object, on the session's connection (past the ORM's statement handling), its row locked.
_JOB_COLUMNS_LOCKED = _with_holder(
    select(
        Job.id,
        Job.token_hash,
        Job.status,
        Job.phase,
        Job.run_id,
        Job.cancel_requested_at,
        Job.force_cancel_requested_at,
        Agent.status.label("agent_status"),
        AgentToken.id.label("token_id"),
        AgentToken.revoked_at,
    )
).with_for_update(of=Job)


@dataclass(frozen=True, slots=True)
class AdmittedJob:
    id: str
    status: str
    phase: str
    run_id: str
    cancel_requested_at: datetime | None
    force_cancel_requested_at: datetime | None

    def cancel_orders(self) -> list[dict[str, str]]:
        """The job's standing cancel request, as `AgentJobs.orders` gives it."""
        order = _cancel_order(self)
        return [order] if order is not None else []


async def authenticate_columns(connection: AsyncConnection, job_id: str, secret: str, right: JobRight) -> AdmittedJob:
    """`authenticate`, locking, for a caller that changes nothing in the job."""
    row = (await connection.execute(_JOB_COLUMNS_LOCKED, {"job_id": job_id})).first()
    if row is None:
        raise NotFound(f"Job {job_id!r} was not found.")
    _admit(job_id, secret, right, row.token_hash, row.status, row.phase, row.agent_status, row.token_id, row.revoked_at)
    return AdmittedJob(
        row.id, row.status, row.phase, row.run_id, row.cancel_requested_at, row.force_cancel_requested_at
    )


def _admit(
    job_id: str,
    secret: str,
    right: JobRight,
    token_hash: str | None,
    status: str,
    phase: str,
    agent_status: str | None,
    token_id: str | None,
    revoked_at: datetime | None,
) -> None:
    if token_hash is None or not secrets_match(secret, token_hash):
        raise NotFound(f"Job {job_id!r} was not found.")
    if JobStatus(status) not in ACTIVE_JOB:
        raise JobFenced(
            f"Job {job_id} is {status}: the server no longer accepts anything for it.",
            title="job no longer active",
        )
    if agent_status is None or AgentStatus(agent_status) not in LIVE or token_id is None or revoked_at is not None:
        raise JobFenced(f"Job {job_id}'s agent may no longer work.", title="job no longer active")
    if right not in JOB_RIGHTS[Phase(phase)]:
        raise Forbidden(f"A {phase} job's credential cannot {right.value.replace('-', ' ')}.", title="not allowed")


async def phase_of(session: AsyncSession, job: Job) -> Plan | Apply:
    """The plan or apply the job executes (its id is also its log's id)."""
    return await (runs_store.plan_of if job.phase == Phase.PLAN.value else runs_store.apply_of)(session, job.run_id)


async def run_and_phase(session: AsyncSession, job: Job) -> tuple[Run, Plan | Apply]:
    """The job's run, locked, and the plan or apply the job executes, in one statement."""
    return await runs_store.locked_with_phase(session, job.run_id, Plan if job.phase == Phase.PLAN.value else Apply)


async def start(session: AsyncSession, job: Job) -> None:
    if job.status == JobStatus.RUNNING.value:
        return  # a retried start
    check_job_transition(JobStatus(job.status), JobStatus.RUNNING)
    job.status = JobStatus.RUNNING.value
    job.started_at = utcnow()
    run, phase = await run_and_phase(session, job)
    runs_store.transition(run, RunEvent.PLAN_STARTED if job.phase == Phase.PLAN.value else RunEvent.APPLY_STARTED)
    runs_store.set_phase(phase, PhaseStatus.RUNNING)
    phase.agent_id = job.agent_id


async def payload(session: AsyncSession, job: Job, box: Encryptor) -> dict[str, Any]:
    """Everything the agent needs to execute the job, sensitive variable values included."""
    run = await runs_store.get(session, job.run_id)
    workspace = await session.get(Workspace, run.workspace_id)
    assert workspace is not None
    variables = (
        await session.execute(select(Variable).where(Variable.workspace_id == workspace.id).order_by(Variable.key))
    ).scalars()
    phase = await phase_of(session, job)
    extra: dict[str, Any] = {}
    if job.phase == Phase.APPLY.value:
        # The saved plan's digest: an agent that kept the plan's directory applies there (agent/kept.py);
        # and whether the plan's JSON is stored: when it is not, the apply renders it (store_plan).
        saved = (
            await session.execute(
                select(Blob.sha256, Plan.plan_json_blob_id)
                .select_from(Plan)
                .outerjoin(Blob, Plan.plan_file_blob_id == Blob.id)
                .where(Plan.run_id == run.id)
            )
        ).one()
        extra["plan_sha256"] = saved.sha256
        extra["plan_json_stored"] = saved.plan_json_blob_id is not None
    return {
        "id": job.id,
        "phase": job.phase,
        "attempt": job.attempt,
        "log_id": phase.id,
        "run": {
            "id": run.id,
            "message": run.message,
            "is_destroy": run.is_destroy,
            "refresh": run.refresh,
            "refresh_only": run.refresh_only,
            "plan_only": run.plan_only,
            "auto_apply": run.auto_apply,
            "target_addrs": run.target_addrs or [],
            "replace_addrs": run.replace_addrs or [],
        },
        "workspace": {
            "id": workspace.id,
            "name": workspace.name,
            "organization": workspace.organization_id,
            "terraform_version": workspace.terraform_version,
            "working_directory": workspace.working_directory or "",
        },
        "variables": [
            {"key": v.key, "value": plain_value(v, box), "category": v.category, "hcl": v.hcl, "sensitive": v.sensitive}
            for v in variables
        ],
        "log_size": phase.log_size,
        **extra,
    }


async def configuration(session: AsyncSession, job: Job) -> bytes:
    run = await runs_store.get(session, job.run_id)
    cv = await configs.get(session, run.configuration_version_id)
    if cv.blob_id is None:
        raise NotFound("The run's configuration was never uploaded.")
    return await blobs.get(session, cv.blob_id)


async def current_state(session: AsyncSession, job: Job) -> bytes | None:
    run = await runs_store.get(session, job.run_id)
    workspace = await session.get(Workspace, run.workspace_id)
    assert workspace is not None
    return await state.current_raw(session, workspace)


async def store_plan(session: AsyncSession, job: Job, kind: str, data: bytes) -> None:
    """The saved plan ("file") or its JSON ("json"). The plan job stores both, but leaves the JSON to
    the apply job when the run applies at once (agent/job.py); the apply job may then store it once."""
    plan = await runs_store.plan_of(session, job.run_id)
    if job.phase != Phase.PLAN.value:
        if kind != "json":
            raise Conflict("Only a plan job uploads a saved plan.")
        if plan.plan_json_blob_id is not None:
            stored = await session.scalar(select(Blob.sha256).where(Blob.id == plan.plan_json_blob_id))
            if stored == hashlib.sha256(data).hexdigest():
                return  # the same upload again, after a lost answer
            raise Conflict(
                "The plan's JSON is already stored: an apply job only stores the JSON of a plan that has none."
            )
    blob_id = await blobs.put(session, data)
    if kind == "file":
        plan.plan_file_blob_id = blob_id
    else:
        plan.plan_json_blob_id = blob_id


async def plan_file(session: AsyncSession, job: Job) -> bytes:
    plan = await runs_store.plan_of(session, job.run_id)
    if plan.plan_file_blob_id is None:
        raise NotFound("The run's plan file is missing.")
    return await blobs.get(session, plan.plan_file_blob_id)


async def store_state(session: AsyncSession, job: Job, raw: bytes) -> str:
    run = await runs_store.get(session, job.run_id)
    workspace = await session.get(Workspace, run.workspace_id, with_for_update=True)
    assert workspace is not None
    current = await state.current(session, workspace)
    parsed = state.parse_state(raw)
    if (
        current is not None
        and current.md5
        and current.serial == parsed["serial"]
        and current.lineage == parsed.get("lineage")
    ):
        return current.id  # the same state sent twice (a retried upload)
    sv = await state.create(session, workspace, raw, run_id=run.id)
    if job.phase == Phase.APPLY.value:
        (await runs_store.apply_of(session, run.id)).state_version_id = sv.id
    return sv.id


@dataclass(frozen=True)
class Result:
    outcome: JobOutcome
    message: str = ""
    has_changes: bool = False
    additions: int = 0
    changes: int = 0
    destructions: int = 0


async def finish(session: AsyncSession, job: Job, run: Run, phase: Plan | Apply, result: Result) -> None:
    """Record the end of a job (`run` locked, and `phase` its plan or apply: `run_and_phase`). The agent
    calls this last, after every log byte is stored."""
    new_status = {
        JobOutcome.SUCCEEDED: JobStatus.FINISHED,
        JobOutcome.CANCELED: JobStatus.CANCELED,
    }.get(result.outcome, JobStatus.ERRORED)
    job.status = new_status.value
    job.outcome = result.outcome.value
    job.message = result.message or None
    job.finished_at = utcnow()
    job.lease_expires_at = None
    phase.resource_additions = result.additions
    phase.resource_changes = result.changes
    phase.resource_destructions = result.destructions
    if result.outcome == JobOutcome.ERRORED and result.message:
        await logs.write_server_line(session, phase.id, f"Error: {result.message}")
    phase.log_complete = True
    await _conclude(session, job, run, phase, result)
    # Last, as before the changes above were written: rows are locked job, run, workspace, then agent.
    if job.agent_id:
        await agents_store.idle_if_free(session, job.agent_id, job.id)


async def _conclude(session: AsyncSession, job: Job, run: Run, phase: Plan | Apply, result: Result) -> None:
    """The run after its job's end: the next phase queued, or the run finished and its workspace freed."""
    if result.outcome == JobOutcome.SUCCEEDED:
        runs_store.set_phase(phase, PhaseStatus.FINISHED)
        if isinstance(phase, Plan):
            phase.has_changes = result.has_changes
            run.has_changes = result.has_changes
            if run.plan_only or not result.has_changes or (run.refresh_only and not result.has_changes):
                runs_store.transition(run, RunEvent.PLAN_FINISHED_NO_APPLY)
                await runs_store.release(session, run)
            else:
                runs_store.transition(run, RunEvent.PLAN_FINISHED)
                if run.auto_apply:
                    await runs_store.queue_apply(session, run)
        else:
            runs_store.transition(run, RunEvent.APPLY_FINISHED)
            await runs_store.release(session, run)
        return

    terminal = PhaseStatus.CANCELED if result.outcome == JobOutcome.CANCELED else PhaseStatus.ERRORED
    runs_store.set_phase(phase, terminal)
    if job.phase == Phase.PLAN.value:
        (await runs_store.apply_of(session, run.id)).status = PhaseStatus.UNREACHABLE.value
    run.error_message = result.message or None
    runs_store.transition(run, RunEvent.CANCEL if terminal == PhaseStatus.CANCELED else RunEvent.ERROR)
    await runs_store.release(session, run)


_ACTIVE_VALUES = frozenset(s.value for s in ACTIVE_JOB)
FORCE_CANCEL_REPEAT = timedelta(minutes=10)


@dataclass(frozen=True)
class AgentJobs:
    """An agent's active jobs and recently force-canceled ones, read in one statement: a poll or heartbeat
    derives from them the cancel orders, the jobs lost on the way, and whether the agent is busy."""

    rows: list[Any]

    @property
    def active(self) -> int:
        return sum(1 for r in self.rows if r.status in _ACTIVE_VALUES)

    def orders(self) -> list[dict[str, str]]:
        """Standing cancel requests: persisted, so an agent that missed the moment still receives them at
        its next call. A force-cancel ends the job at once on the server, so it is repeated for a while
        after the job ended, until the agent has surely heard it."""
        return [order for r in self.rows if (order := _cancel_order(r)) is not None]

    def undelivered(self, known: list[str]) -> list[str]:
        """Jobs assigned to the agent that it does not know of: the answer that carried them was lost."""
        return [r.id for r in self.rows if r.status == JobStatus.ASSIGNED.value and r.id not in known]


def _cancel_order(job: Any) -> dict[str, str] | None:
    """The cancel order standing for a job (its id, status and cancel request times), if any."""
    if job.force_cancel_requested_at is not None:
        return {"job": job.id, "kind": "force"}
    if job.status in _ACTIVE_VALUES and job.cancel_requested_at is not None:
        return {"job": job.id, "kind": "cancel"}
    return None


# Each branch names the agent so that each is an index range (ix_jobs_agent_status, ix_jobs_agent_finished):
# with the agent factored out of the OR, the database reads every job the agent ever had, at every call.
_AGENT_JOBS = select(Job.id, Job.status, Job.cancel_requested_at, Job.force_cancel_requested_at).where(
    or_(
        and_(Job.agent_id == bindparam("agent_id"), Job.status.in_(sorted(_ACTIVE_VALUES))),
        and_(
            Job.agent_id == bindparam("agent_id"),
            Job.finished_at > bindparam("force_since"),
            Job.force_cancel_requested_at.is_not(None),
        ),
    ),
)


async def agent_jobs(session: AsyncSession, agent_id: str) -> AgentJobs:
    params = {"agent_id": agent_id, "force_since": utcnow() - FORCE_CANCEL_REPEAT}
    return AgentJobs(list((await session.execute(_AGENT_JOBS, params)).all()))


async def renew_leases(session: AsyncSession, agent_id: str, lease: timedelta) -> None:
    await session.execute(
        update(Job)
        .where(Job.agent_id == agent_id, Job.status.in_([s.value for s in ACTIVE_JOB]))
        .values(lease_expires_at=utcnow() + lease)
    )


async def queue_depth(session: AsyncSession, pool_id: str) -> int:
    return (
        await session.execute(
            select(func.count()).select_from(Job).where(Job.pool_id == pool_id, Job.status == JobStatus.QUEUED.value)
        )
    ).scalar_one()


async def any_queued(session: AsyncSession, pool_id: str) -> bool:
    """Whether the pool has a queued job: the check an idle agent's poll makes before it takes a write."""
    query = select(Job.id).where(Job.pool_id == pool_id, Job.status == JobStatus.QUEUED.value).limit(1)
    return (await session.execute(query)).first() is not None


async def active_for_agent(session: AsyncSession, agent_id: str) -> list[Job]:
    return list(
        (
            await session.execute(
                select(Job).where(Job.agent_id == agent_id, Job.status.in_([s.value for s in ACTIVE_JOB]))
            )
        ).scalars()
    )


async def active_for_run(session: AsyncSession, run: Run) -> Job | None:
    if run.status not in (RunStatus.PLANNING.value, RunStatus.APPLYING.value):
        return None
    return (
        await session.execute(select(Job).where(Job.run_id == run.id, Job.status.in_([s.value for s in ACTIVE_JOB])))
    ).scalar_one_or_none()
