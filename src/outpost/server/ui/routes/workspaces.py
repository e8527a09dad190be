"""Workspaces: the list, settings, variables and state."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from outpost.domain.permissions import Action
from outpost.domain.workspaces import DEFAULT_TERRAFORM_VERSION, ExecutionMode
from outpost.errors import OutpostError
from outpost.server.context import Outpost, outpost
from outpost.server.ui import access, render
from outpost.server.ui.routes.common import checked, context, csrf_checked, field, signed_in
from outpost.server.ui.sessions import WebUser
from outpost.store import overviews, pools, state
from outpost.store import workspaces as ws_store
from outpost.store.workspaces import WorkspaceSettings

router = APIRouter(dependencies=[Depends(csrf_checked)])

MODES = [
    (ExecutionMode.REMOTE.value, "Remote", "Runs on the server's built-in agent."),
    (ExecutionMode.AGENT.value, "Agent", "Runs on an agent of the pool chosen below, inside your network."),
    (ExecutionMode.LOCAL.value, "Local", "Runs on your machine; Outpost only stores the state."),
]


def workspace_url(org: str, name: str, tab: str = "", **query: str) -> str:
    url = f"/app/{quote(org, safe='')}/workspaces/{quote(name, safe='')}"
    if tab:
        url += f"/{tab}"
    if query:
        url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return url


def _settings_from(form_values: dict[str, Any]) -> WorkspaceSettings:
    settings = WorkspaceSettings()
    for key in ("name", "execution_mode", "agent_pool_id", "terraform_version", "auto_apply"):
        if key in form_values:
            setattr(settings, key, form_values[key])
    return settings


# --- the list -----------------------------------------------------------------------------------


async def _list_page(
    request: Request,
    app: Outpost,
    user: WebUser,
    org: str,
    *,
    error: str | None = None,
    status: int = 200,
    values: dict[str, Any] | None = None,
) -> Response:
    async with app.db.read() as session:
        await access.organization(session, user.principal, org, Action.LIST_WORKSPACES)
        visible = await access.readable_workspaces(session, user.principal, org)
        found, _total = await ws_store.list_for(session, org, search=None, offset=0, limit=1000, only=visible)
        can_create = await access.may(session, user.principal, org, Action.CREATE_WORKSPACE)
        latest = await overviews.runs_by_id(session, [w.latest_run_id for w in found if w.latest_run_id])
        org_pools = await pools.list_pools(session, org)
    return render.page(
        request,
        "workspaces/list.html",
        context(
            request,
            user,
            title="Workspaces",
            org=org,
            area="workspaces",
            workspaces=found,
            latest=latest,
            pools=org_pools,
            pool_names={p.id: p.name for p in org_pools},
            modes=MODES,
            can_create=can_create,
            error=error,
            values=values or {"execution_mode": "remote", "terraform_version": DEFAULT_TERRAFORM_VERSION},
        ),
        status=status,
    )


@router.get("/{org}/workspaces")
async def list_workspaces(
    org: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    return await _list_page(request, app, user, org)


def _settings_values(form: Any) -> dict[str, Any]:
    return {
        "execution_mode": field(form, "execution_mode"),
        "agent_pool_id": field(form, "agent_pool_id") or None,
        "terraform_version": field(form, "terraform_version") or DEFAULT_TERRAFORM_VERSION,
        "auto_apply": checked(form, "auto_apply"),
    }


@router.post("/{org}/workspaces")
async def create_workspace(
    org: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    form = await request.form()
    values = {"name": field(form, "name"), **_settings_values(form)}
    try:
        async with app.db.write() as session:
            await access.organization(session, user.principal, org, Action.CREATE_WORKSPACE)
            workspace = await ws_store.create(session, org, _settings_from(values))
    except OutpostError as exc:
        return await _list_page(request, app, user, org, error=exc.detail, status=exc.status, values=values)
    return render.redirect(workspace_url(org, workspace.name, done="workspace-created"))


# --- settings -----------------------------------------------------------------------------------


async def _settings_page(
    request: Request,
    app: Outpost,
    user: WebUser,
    org: str,
    name: str,
    *,
    error: str | None = None,
    status: int = 200,
    values: dict[str, Any] | None = None,
) -> Response:
    async with app.db.read() as session:
        workspace = await access.workspace(session, user.principal, org, name, Action.READ_STATE)
        may = await access.allowed(
            session, user.principal, workspace, Action.UPDATE_WORKSPACE, Action.CHANGE_EXECUTION_MODE
        )
        org_pools = await pools.list_pools(session, org)
    current = {
        "execution_mode": workspace.execution_mode,
        "agent_pool_id": workspace.agent_pool_id,
        "terraform_version": workspace.terraform_version,
        "auto_apply": workspace.auto_apply,
    }
    return render.page(
        request,
        "workspaces/settings.html",
        context(
            request,
            user,
            title=f"Settings of {workspace.name}",
            org=org,
            area="workspaces",
            tab="settings",
            workspace=workspace,
            pools=org_pools,
            modes=MODES,
            can_update=Action.UPDATE_WORKSPACE in may,
            can_change_mode=Action.CHANGE_EXECUTION_MODE in may,
            values=values or current,
            error=error,
        ),
        status=status,
    )


@router.get("/{org}/workspaces/{name}/settings")
async def settings(
    org: str, name: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    return await _settings_page(request, app, user, org, name)


@router.post("/{org}/workspaces/{name}/settings")
async def save_settings(
    org: str, name: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    values = _settings_values(await request.form())
    try:
        async with app.db.write() as session:
            workspace = await access.workspace(session, user.principal, org, name, Action.UPDATE_WORKSPACE, lock=True)
            settings = _settings_from(values)
            if ws_store.changes_execution(settings, workspace):
                await access.workspace(session, user.principal, org, name, Action.CHANGE_EXECUTION_MODE)
            await ws_store.apply_settings(session, workspace, settings)
    except OutpostError as exc:
        return await _settings_page(request, app, user, org, name, error=exc.detail, status=exc.status, values=values)
    return render.redirect(workspace_url(org, name, "settings", done="settings-saved"))


# --- variables ----------------------------------------------------------------------------------


async def _variables_page(
    request: Request,
    app: Outpost,
    user: WebUser,
    org: str,
    name: str,
    *,
    error: str | None = None,
    status: int = 200,
    values: dict[str, Any] | None = None,
) -> Response:
    async with app.db.read() as session:
        workspace = await access.workspace(session, user.principal, org, name, Action.READ_VARIABLES)
        can_write = bool(await access.allowed(session, user.principal, workspace, Action.WRITE_VARIABLES))
        variables = await ws_store.list_variables(session, workspace.id)
    return render.page(
        request,
        "workspaces/variables.html",
        context(
            request,
            user,
            title=f"Variables of {workspace.name}",
            org=org,
            area="workspaces",
            tab="variables",
            workspace=workspace,
            variables=variables,
            can_write=can_write,
            values=values or {"category": "terraform"},
            error=error,
        ),
        status=status,
    )


@router.get("/{org}/workspaces/{name}/variables")
async def variables(
    org: str, name: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    return await _variables_page(request, app, user, org, name)


@router.post("/{org}/workspaces/{name}/variables")
async def add_variable(
    org: str, name: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    form = await request.form()
    raw_value = form.get("value")
    key, category, description = field(form, "key"), field(form, "category"), field(form, "description")
    hcl, sensitive = checked(form, "hcl"), checked(form, "sensitive")
    values = {"key": key, "category": category, "hcl": hcl, "sensitive": sensitive, "description": description}
    try:
        async with app.db.write() as session:
            workspace = await access.workspace(session, user.principal, org, name, Action.WRITE_VARIABLES)
            await ws_store.create_variable(
                session,
                workspace,
                key=key,
                value=raw_value if isinstance(raw_value, str) else "",
                category=category,
                hcl=hcl,
                sensitive=sensitive,
                description=description or None,
                box=app.box,
            )
    except OutpostError as exc:
        # The value is not sent back: a sensitive one must never appear on a page.
        return await _variables_page(request, app, user, org, name, error=exc.detail, status=exc.status, values=values)
    return render.redirect(workspace_url(org, name, "variables", done="variable-added"))


@router.post("/{org}/workspaces/{name}/variables/{var_id}")
async def update_variable(
    org: str,
    name: str,
    var_id: str,
    request: Request,
    user: WebUser = Depends(signed_in),
    app: Outpost = Depends(outpost),
) -> Response:
    form = await request.form()
    raw_value = form.get("value")
    try:
        async with app.db.write() as session:
            workspace = await access.workspace(session, user.principal, org, name, Action.WRITE_VARIABLES)
            variable = await ws_store.get_variable(session, workspace.id, var_id)
            changes: dict[str, object] = {
                "hcl": checked(form, "hcl"),
                "description": field(form, "description") or None,
                "sensitive": checked(form, "sensitive"),
            }
            # A sensitive value is write-only: an empty field keeps the value it has.
            if isinstance(raw_value, str) and (raw_value or not variable.sensitive):
                changes["value"] = raw_value
            await ws_store.update_variable(session, variable, changes, box=app.box)
    except OutpostError as exc:
        return await _variables_page(request, app, user, org, name, error=exc.detail, status=exc.status)
    return render.redirect(workspace_url(org, name, "variables", done="variable-saved"))


@router.post("/{org}/workspaces/{name}/variables/{var_id}/delete")
async def delete_variable(
    org: str,
    name: str,
    var_id: str,
    request: Request,
    user: WebUser = Depends(signed_in),
    app: Outpost = Depends(outpost),
) -> Response:
    try:
        async with app.db.write() as session:
            workspace = await access.workspace(session, user.principal, org, name, Action.WRITE_VARIABLES)
            await session.delete(await ws_store.get_variable(session, workspace.id, var_id))
    except OutpostError as exc:
        return await _variables_page(request, app, user, org, name, error=exc.detail, status=exc.status)
    return render.redirect(workspace_url(org, name, "variables", done="variable-deleted"))


# --- state --------------------------------------------------------------------------------------


@router.get("/{org}/workspaces/{name}/state")
async def state_page(
    org: str, name: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        workspace = await access.workspace(session, user.principal, org, name, Action.READ_STATE)
        versions = await state.list_for(session, workspace.id)
        current = await state.current(session, workspace)
        outputs = await state.outputs(session, current.id) if current is not None else []
    return render.page(
        request,
        "workspaces/state.html",
        context(
            request,
            user,
            title=f"State of {workspace.name}",
            org=org,
            area="workspaces",
            tab="state",
            workspace=workspace,
            versions=versions,
            current=current,
            outputs=outputs,
        ),
    )
