"""Runs and their actions, the organization's queue and capacity."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.jobs import JobStatus
from outpost.domain.permissions import Action
from outpost.domain.runs import RunStatus
from outpost.errors import Unprocessable
from outpost.server import jsonapi
from outpost.server.api import bodies, shapes
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import configs
from outpost.store import runs as runs_store
from outpost.store import workspaces as ws_store
from outpost.store.runs import RunOptions
from outpost.store.tables import Apply, Job, Plan, Run, Workspace
from outpost.timeutil import iso

router = APIRouter(tags=["runs"])


async def run_resource(
    session: AsyncSession,
    app: Outpost,
    caller: Caller,
    run: Run,
    *,
    known: tuple[Plan, Apply, Workspace] | None = None,
) -> jsonapi.Resource:
    """`known`: the run's plan, apply and workspace when the caller has them (no need to read them again)."""
    if known is None:
        plan = await runs_store.plan_of(session, run.id)
        apply = await runs_store.apply_of(session, run.id)
        workspace = await ws_store.get(session, run.workspace_id)
    else:
        plan, apply, workspace = known
    force_at = None
    if run.status in (RunStatus.PLANNING.value, RunStatus.APPLYING.value):
        requested = (
            await session.execute(
                select(Job.cancel_requested_at).where(Job.run_id == run.id, Job.status == JobStatus.RUNNING.value)
            )
        ).scalar_one_or_none()
        if requested is not None:
            force_at = iso(requested + timedelta(seconds=app.config.force_cancel_cooloff))
    position = await runs_store.queue_position(session, run)
    access = await caller.level(session, workspace)
    return shapes.run(run, plan, apply, force_cancel_available_at=force_at, position=position, access=access)


@router.post("/runs", status_code=201, openapi_extra=bodies.body("runs"))
async def create_run(
    request: Request, caller: Caller = guard(Action.QUEUE_RUN), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "runs")
    attrs = jsonapi.attributes_of(body, required=False)
    workspace_id = jsonapi.relationship_id(body, "workspace")
    if workspace_id is None:
        raise Unprocessable("A run needs a workspace relationship.", title="workspace required")
    cv_id = jsonapi.relationship_id(body, "configuration-version")
    options = RunOptions(
        message=jsonapi.string(attrs, "message") or "",
        source="terraform" if request.headers.get("user-agent", "").startswith("go-tfe") else "tfe-api",
        is_destroy=bool(jsonapi.boolean(attrs, "is-destroy", False)),
        refresh=bool(jsonapi.boolean(attrs, "refresh", True)),
        refresh_only=bool(jsonapi.boolean(attrs, "refresh-only", False)),
        plan_only=bool(jsonapi.boolean(attrs, "plan-only", False)),
        auto_apply=jsonapi.boolean(attrs, "auto-apply"),
        target_addrs=jsonapi.string_list(attrs, "target-addrs"),
        replace_addrs=jsonapi.string_list(attrs, "replace-addrs"),
        user_id=caller.user_id,
    )
    async with app.db.write() as session:
        workspace = await caller.workspace(session, workspace_id, lock=True)
        # Queuing a plan needs plan access; a run that would destroy, or apply without a confirmation,
        # needs what those need.
        if options.is_destroy:
            await caller.check(session, workspace, Action.QUEUE_DESTROY)
        auto_apply = workspace.auto_apply if options.auto_apply is None else options.auto_apply
        if auto_apply and not options.plan_only:
            await caller.check(session, workspace, Action.APPLY_RUN)
        if cv_id is None:
            latest = await configs.latest_uploaded(session, workspace.id)
            if latest is None:
                raise Unprocessable(
                    "The workspace has no uploaded configuration version to run.", title="configuration required"
                )
            cv = latest
        else:
            cv = await configs.get(session, cv_id)
            if cv.workspace_id != workspace.id:
                raise Unprocessable("The configuration version belongs to another workspace.")
        new = await runs_store.create(session, workspace, cv, options)
        data = await run_resource(session, app, caller, new.run, known=(new.plan, new.apply, workspace))
    return jsonapi.document(data, status=201)


@router.get("/runs/{run_id}")
async def show_run(run_id: str, caller: Caller = guard(Action.READ_RUNS), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        run = await caller.run(session, run_id)
        return jsonapi.document(await run_resource(session, app, caller, run))


@router.get("/workspaces/{workspace_id}/runs")
async def list_runs(
    workspace_id: str, request: Request, caller: Caller = guard(Action.READ_RUNS), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    async with app.db.read() as session:
        await caller.workspace(session, workspace_id)
        found, total = await runs_store.list_for_workspace(session, workspace_id, offset=page.offset, limit=page.size)
        data = [await run_resource(session, app, caller, r) for r in found]
    return jsonapi.document(data, meta=page.meta(total))


async def _action(app: Outpost, caller: Caller, run_id: str, request: Request, action: str) -> Response:
    await jsonapi.read_body(request)  # validated (malformed JSON is refused), otherwise unused
    async with app.db.write() as session:
        run = await caller.run(session, run_id, lock=True)
        if action == "apply":
            await runs_store.confirm(session, run)
        elif action == "discard":
            await runs_store.discard(session, run)
        elif action == "cancel":
            await runs_store.cancel(session, run)
        else:
            await runs_store.force_cancel(session, run, timedelta(seconds=app.config.force_cancel_cooloff))
    return Response(status_code=202)


@router.post("/runs/{run_id}/actions/apply", status_code=202, openapi_extra=bodies.body("actions", required=False))
async def apply_run(
    run_id: str, request: Request, caller: Caller = guard(Action.APPLY_RUN), app: Outpost = Depends(outpost)
) -> Response:
    return await _action(app, caller, run_id, request, "apply")


@router.post("/runs/{run_id}/actions/discard", status_code=202, openapi_extra=bodies.body("actions", required=False))
async def discard_run(
    run_id: str, request: Request, caller: Caller = guard(Action.DISCARD_RUN), app: Outpost = Depends(outpost)
) -> Response:
    return await _action(app, caller, run_id, request, "discard")


@router.post("/runs/{run_id}/actions/cancel", status_code=202, openapi_extra=bodies.body("actions", required=False))
async def cancel_run(
    run_id: str, request: Request, caller: Caller = guard(Action.CANCEL_RUN), app: Outpost = Depends(outpost)
) -> Response:
    return await _action(app, caller, run_id, request, "cancel")


@router.post(
    "/runs/{run_id}/actions/force-cancel", status_code=202, openapi_extra=bodies.body("actions", required=False)
)
async def force_cancel_run(
    run_id: str, request: Request, caller: Caller = guard(Action.FORCE_CANCEL_RUN), app: Outpost = Depends(outpost)
) -> Response:
    return await _action(app, caller, run_id, request, "force-cancel")


@router.get("/organizations/{org}/runs/queue")
async def run_queue(
    org: str, request: Request, caller: Caller = guard(Action.READ_RUN_QUEUE), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    async with app.db.read() as session:
        await caller.organization(session, org)
        waiting = [RunStatus.PENDING.value, RunStatus.PLAN_QUEUED.value, RunStatus.APPLY_QUEUED.value]
        query = (
            select(Run)
            .join(Workspace, Workspace.id == Run.workspace_id)
            .where(Workspace.organization_id == org, Run.status.in_(waiting))
        )
        visible = await caller.readable_workspaces(session, org)
        if visible is not None:
            query = query.where(Workspace.id.in_(sorted(visible)))
        total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        found = (await session.execute(query.order_by(Run.created_at).offset(page.offset).limit(page.size))).scalars()
        data = [await run_resource(session, app, caller, r) for r in found]
    return jsonapi.document(data, meta=page.meta(total))


@router.get("/organizations/{org}/capacity")
async def capacity(
    org: str, caller: Caller = guard(Action.READ_RUN_QUEUE), app: Outpost = Depends(outpost)
) -> Response:
    waiting = (RunStatus.PENDING.value, RunStatus.PLAN_QUEUED.value, RunStatus.APPLY_QUEUED.value)
    working = (RunStatus.PLANNING.value, RunStatus.APPLYING.value)
    async with app.db.read() as session:
        await caller.organization(session, org)
        # Only the statuses counted: finished runs, nearly all of them, are never read (ix_runs_workspace_status).
        rows = await session.execute(
            select(Run.status, func.count())
            .join(Workspace, Workspace.id == Run.workspace_id)
            .where(Workspace.organization_id == org, Run.status.in_(waiting + working))
            .group_by(Run.status)
        )
        # Not dict(rows): a Result has keys() (its column names), so dict() would read it as a mapping.
        counts = {status: count for status, count in rows.all()}
    pending = sum(counts.get(s, 0) for s in waiting)
    running = sum(counts.get(s, 0) for s in working)
    return jsonapi.document(jsonapi.resource("organization-capacity", org, {"pending": pending, "running": running}))
