"""Runs: a workspace's runs, queuing one, and the run page with its live status and logs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Action
from outpost.domain.runs import CANCELABLE, DISCARDABLE, FINAL, PHASE_FINAL, PhaseStatus, RunEvent, RunStatus, can
from outpost.domain.workspaces import ExecutionMode
from outpost.errors import OutpostError, Unprocessable
from outpost.server.context import Outpost, outpost
from outpost.server.ui import access, live, render
from outpost.server.ui.routes.common import context, csrf_checked, field, signed_in, upload
from outpost.server.ui.routes.workspaces import workspace_url
from outpost.server.ui.sessions import WebUser
from outpost.store import archives, configs, logs, overviews
from outpost.store import jobs as jobs_store
from outpost.store import runs as runs_store
from outpost.store.runs import RunOptions
from outpost.store.tables import Apply, Plan, Run, Workspace
from outpost.timeutil import utcnow

router = APIRouter(dependencies=[Depends(csrf_checked)])

# Larger logs are shown from their end; the page says so.
_SHOWN_LOG_BYTES = 2 * 1024 * 1024
_STREAM_CHUNK = 256 * 1024
# Each button's action and the permission it needs (the same as the API's endpoint for it).
ACTION_RIGHTS = {
    "apply": Action.APPLY_RUN,
    "discard": Action.DISCARD_RUN,
    "cancel": Action.CANCEL_RUN,
    "force-cancel": Action.FORCE_CANCEL_RUN,
}


def run_url(org: str, workspace: str, run_id: str, **query: str) -> str:
    return workspace_url(org, workspace, f"runs/{run_id}", **query)


# --- a workspace's runs -------------------------------------------------------------------------


async def _runs_page(
    request: Request,
    app: Outpost,
    user: WebUser,
    org: str,
    name: str,
    *,
    error: str | None = None,
    status: int = 200,
    message: str = "",
) -> Response:
    async with app.db.read() as session:
        workspace = await access.workspace(session, user.principal, org, name, Action.READ_RUNS)
        can_queue = bool(await access.allowed(session, user.principal, workspace, Action.QUEUE_RUN))
        found, total = await runs_store.list_for_workspace(session, workspace.id, offset=0, limit=50)
        phases = {r.id: await runs_store.plan_of(session, r.id) for r in found}
        latest_cv = await configs.latest_uploaded(session, workspace.id)
        pool_name = None
        if workspace.agent_pool_id:
            pool_name = (await overviews.pool_names(session, [workspace.agent_pool_id])).get(workspace.agent_pool_id)
    return render.page(
        request,
        "workspaces/runs.html",
        context(
            request,
            user,
            title=f"Workspace {workspace.name}",
            org=org,
            area="workspaces",
            tab="runs",
            workspace=workspace,
            runs=found,
            total=total,
            plans=phases,
            latest_cv=latest_cv,
            pool_name=pool_name,
            runs_here=workspace.execution_mode != ExecutionMode.LOCAL.value,
            can_queue=can_queue,
            error=error,
            message=message,
        ),
        status=status,
    )


@router.get("/{org}/workspaces/{name}")
async def workspace_runs(
    org: str, name: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    return await _runs_page(request, app, user, org, name)


@router.post("/{org}/workspaces/{name}/runs")
async def queue_run(
    org: str, name: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    form = await request.form()
    message = field(form, "message")
    archive = upload(form, "configuration") if field(form, "source") == "upload" else None
    try:
        data = None
        if field(form, "source") == "upload":
            if archive is None:
                raise Unprocessable(
                    "Choose a .tar.gz of the configuration directory to upload, or run the latest configuration.",
                    title="no file chosen",
                )
            try:
                data = await archive.read(archives.MAX_ARCHIVE_BYTES + 1)
            finally:
                await archive.close()
        async with app.db.write() as session:
            workspace = await access.workspace(session, user.principal, org, name, Action.QUEUE_RUN, lock=True)
            if data is not None:
                cv = await configs.create(
                    session, workspace, speculative=False, auto_queue_runs=False, source="tfe-api"
                )
                await configs.upload(session, cv, data)
            else:
                latest = await configs.latest_uploaded(session, workspace.id)
                if latest is None:
                    raise Unprocessable(
                        "This workspace has no configuration yet: upload a .tar.gz of the configuration directory.",
                        title="configuration required",
                    )
                cv = latest
            new = await runs_store.create(
                session,
                workspace,
                cv,
                RunOptions(
                    message=message or "Queued from the web UI", source="tfe-ui", user_id=user.principal.user_id
                ),
            )
    except OutpostError as exc:
        return await _runs_page(request, app, user, org, name, error=exc.detail, status=exc.status, message=message)
    return render.redirect(run_url(org, name, new.run.id))


# --- one run ------------------------------------------------------------------------------------


def _timeline(run: Run) -> list[tuple[str, str]]:
    """(status, time) pairs in the order they happened."""
    events = [(key.removesuffix("-at").replace("-", "_"), str(value)) for key, value in run.status_timestamps.items()]
    return sorted(events, key=lambda e: e[1])


def _allowed_actions(run: Run, force_cancel_at: datetime | None) -> list[str]:
    """What the run's state machine allows now (the store enforces the same rules again)."""
    status = RunStatus(run.status)
    allowed = []
    if can(status, RunEvent.CONFIRM):
        allowed.append("apply")
    if status in DISCARDABLE:
        allowed.append("discard")
    if status in CANCELABLE and force_cancel_at is None:
        allowed.append("cancel")
    if force_cancel_at is not None and utcnow() >= force_cancel_at:
        allowed.append("force-cancel")
    return allowed


async def _run_context(session: AsyncSession, app: Outpost, workspace: Workspace, run: Run) -> dict[str, Any]:
    plan = await runs_store.plan_of(session, run.id)
    apply = await runs_store.apply_of(session, run.id)
    job = await jobs_store.active_for_run(session, run)
    requested = job.cancel_requested_at if job is not None else None
    force_at = requested + timedelta(seconds=app.config.force_cancel_cooloff) if requested else None
    agent_ids = [a for a in (plan.agent_id, apply.agent_id) if a]
    return {
        "run": run,
        "workspace": workspace,
        "plan": plan,
        "apply": apply,
        "timeline": _timeline(run),
        "actions": _allowed_actions(run, force_at),
        "force_cancel_at": force_at,
        "agent_names": await overviews.agent_names(session, agent_ids),
        "position": await runs_store.queue_position(session, run),
        "final": RunStatus(run.status) in FINAL,
    }


async def _log_tail(session: AsyncSession, phase: Plan | Apply) -> tuple[str, int, bool]:
    """The log as shown when the page loads: (text, offset reached, whether the start was cut)."""
    start = max(0, phase.log_size - _SHOWN_LOG_BYTES)
    data = await logs.read(session, phase.id, start, phase.log_size - start)
    return data.decode(errors="replace"), start + len(data), start > 0


async def _run_page(
    request: Request,
    app: Outpost,
    user: WebUser,
    org: str,
    name: str,
    run_id: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    async with app.db.read() as session:
        workspace = await access.workspace(session, user.principal, org, name, Action.READ_RUNS)
        run = await access.run(session, workspace, run_id)
        ctx = await _run_context(session, app, workspace, run)
        may = await access.allowed(session, user.principal, workspace, *ACTION_RIGHTS.values())
        ctx["actions"] = [a for a in ctx["actions"] if ACTION_RIGHTS[a] in may]  # buttons the caller may press
        plan_log = await _log_tail(session, ctx["plan"])
        apply_log = await _log_tail(session, ctx["apply"])
    return render.page(
        request,
        "runs/show.html",
        context(
            request,
            user,
            title=f"Run {run.id}",
            org=org,
            area="workspaces",
            tab="runs",
            plan_log=plan_log,
            apply_log=apply_log,
            error=error,
            **ctx,
        ),
        status=status,
    )


@router.get("/{org}/workspaces/{name}/runs/{run_id}")
async def show_run(
    org: str,
    name: str,
    run_id: str,
    request: Request,
    user: WebUser = Depends(signed_in),
    app: Outpost = Depends(outpost),
) -> Response:
    return await _run_page(request, app, user, org, name, run_id)


def _offset(request: Request, name: str) -> int:
    raw = request.query_params.get(name, "0")
    return int(raw) if raw.isdigit() else 0


@router.get("/{org}/workspaces/{name}/runs/{run_id}/live")
async def live_run(
    org: str,
    name: str,
    run_id: str,
    request: Request,
    user: WebUser = Depends(signed_in),
    app: Outpost = Depends(outpost),
) -> Response:
    async with app.db.read() as session:
        workspace = await access.workspace(session, user.principal, org, name, Action.READ_RUNS)
        run = await access.run(session, workspace, run_id)
    # Where the page's logs end; a reconnecting EventSource says where it got to in Last-Event-ID.
    offsets = {"plan": _offset(request, "plan"), "apply": _offset(request, "apply")}
    resumed = request.headers.get("last-event-id", "")
    for part in resumed.split(","):
        phase, _, value = part.partition(":")
        if phase in offsets and value.isdigit():
            offsets[phase] = int(value)
    last_status = ""

    async def poll() -> tuple[list[str], bool]:
        nonlocal last_status
        out: list[str] = []
        watched: list[str] = []  # logs being written while this page shows them
        async with app.db.read() as session:
            current = await access.run(session, workspace, run.id)
            ctx = await _run_context(session, app, workspace, current)
            complete = True
            for phase_name in ("plan", "apply"):
                phase: Plan | Apply = ctx[phase_name]
                if offsets[phase_name] < phase.log_size:
                    data = await logs.read(
                        session, phase.id, offsets[phase_name], min(_STREAM_CHUNK, phase.log_size - offsets[phase_name])
                    )
                    offsets[phase_name] += len(data)
                    payload = json.dumps({"phase": phase_name, "text": data.decode(errors="replace")})
                    out.append(live.event("log", payload, f"plan:{offsets['plan']},apply:{offsets['apply']}"))
                drained = offsets[phase_name] >= phase.log_size
                settled = PhaseStatus(phase.status) in PHASE_FINAL or phase.status == PhaseStatus.PENDING.value
                complete = complete and drained and (phase.log_complete or not phase.log_size) and settled
                if not settled and not phase.log_complete:
                    watched.append(phase.id)
        for log_id in watched:
            await app.watch_log(log_id)
        html = render.fragment("runs/_status.html", {"org": org, "csrf": user.csrf, **ctx})
        if html != last_status:
            last_status = html
            out.append(live.event("status", html))
        return out, bool(ctx["final"]) and complete

    return live.stream(request, app, poll, tick=0.5)


@router.post("/{org}/workspaces/{name}/runs/{run_id}/actions/{action}")
async def run_action(
    org: str,
    name: str,
    run_id: str,
    action: str,
    request: Request,
    user: WebUser = Depends(signed_in),
    app: Outpost = Depends(outpost),
) -> Response:
    if action not in ACTION_RIGHTS:
        raise Unprocessable(f"{action!r} is not a run action; use one of {', '.join(ACTION_RIGHTS)}.")
    try:
        async with app.db.write() as session:
            workspace = await access.workspace(session, user.principal, org, name, ACTION_RIGHTS[action])
            run = await access.run(session, workspace, run_id, lock=True)
            if action == "apply":
                await runs_store.confirm(session, run)
            elif action == "discard":
                await runs_store.discard(session, run)
            elif action == "cancel":
                await runs_store.cancel(session, run)
            else:
                await runs_store.force_cancel(session, run, timedelta(seconds=app.config.force_cancel_cooloff))
    except OutpostError as exc:
        return await _run_page(request, app, user, org, name, run_id, error=exc.detail, status=exc.status)
    return render.redirect(run_url(org, name, run_id, done=action))
