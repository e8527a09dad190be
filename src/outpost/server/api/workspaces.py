"""Workspaces: settings, locks and variables."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Action
from outpost.server import jsonapi
from outpost.server.api import bodies, shapes
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import runs as runs_store
from outpost.store import workspaces as ws_store
from outpost.store.tables import Workspace
from outpost.store.workspaces import WorkspaceSettings

router = APIRouter(tags=["workspaces"])

_FIELDS = {
    "name": "name",
    "execution-mode": "execution_mode",
    "agent-pool-id": "agent_pool_id",
    "terraform-version": "terraform_version",
    "auto-apply": "auto_apply",
    "description": "description",
    "working-directory": "working_directory",
    "source": "source",
}


def _settings(body: dict[str, Any]) -> WorkspaceSettings:
    attrs = jsonapi.attributes_of(body)
    settings = WorkspaceSettings()
    for key, field in _FIELDS.items():
        if key in attrs:
            setattr(settings, field, attrs[key])
    pool = jsonapi.relationship_id(body, "agent-pool")
    if pool is not None and "agent-pool-id" not in attrs:
        settings.agent_pool_id = pool
    # Terraform Cloud's older flag: operations=false means local execution.
    if attrs.get("operations") is False and "execution-mode" not in attrs:
        settings.execution_mode = "local"
    return settings


async def workspace_resource(session: AsyncSession, caller: Caller, workspace: Workspace) -> jsonapi.Resource:
    return shapes.workspace(workspace, access=await caller.level(session, workspace))


@router.get("/organizations/{org}/workspaces")
async def list_workspaces(
    org: str, request: Request, caller: Caller = guard(Action.LIST_WORKSPACES), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    search = request.query_params.get("search[name]") or request.query_params.get("q")
    async with app.db.read() as session:
        await caller.organization(session, org)
        visible = await caller.readable_workspaces(session, org)
        found, total = await ws_store.list_for(
            session, org, search=search, offset=page.offset, limit=page.size, only=visible
        )
        data = [await workspace_resource(session, caller, w) for w in found]
    return jsonapi.document(data, meta=page.meta(total))


@router.post("/organizations/{org}/workspaces", status_code=201, openapi_extra=bodies.body("workspaces"))
async def create_workspace(
    org: str, request: Request, caller: Caller = guard(Action.CREATE_WORKSPACE), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "workspaces")
    settings = _settings(body)
    async with app.db.write() as session:
        await caller.organization(session, org)
        workspace = await ws_store.create(session, org, settings)
        data = await workspace_resource(session, caller, workspace)
    return jsonapi.document(data, status=201)


@router.get("/organizations/{org}/workspaces/{name}")
async def show_workspace_by_name(
    org: str, name: str, caller: Caller = guard(Action.READ_WORKSPACE), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        workspace = await caller.workspace_by_name(session, org, name)
        data = await workspace_resource(session, caller, workspace)
    return jsonapi.document(data)


@router.get("/workspaces/{workspace_id}")
async def show_workspace(
    workspace_id: str, caller: Caller = guard(Action.READ_WORKSPACE), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        workspace = await caller.workspace(session, workspace_id)
        data = await workspace_resource(session, caller, workspace)
    return jsonapi.document(data)


async def _update(app: Outpost, request: Request, caller: Caller, loader: Any) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "workspaces")
    settings = _settings(body)
    async with app.db.write() as session:
        workspace = await loader(session)
        if ws_store.changes_execution(settings, workspace):
            await caller.check(session, workspace, Action.CHANGE_EXECUTION_MODE)
        await ws_store.apply_settings(session, workspace, settings)
        data = await workspace_resource(session, caller, workspace)
    return jsonapi.document(data)


@router.patch("/workspaces/{workspace_id}", openapi_extra=bodies.body("workspaces"))
async def update_workspace(
    workspace_id: str,
    request: Request,
    caller: Caller = guard(Action.UPDATE_WORKSPACE),
    app: Outpost = Depends(outpost),
) -> Response:
    return await _update(app, request, caller, lambda s: caller.workspace(s, workspace_id, lock=True))


@router.patch("/organizations/{org}/workspaces/{name}", openapi_extra=bodies.body("workspaces"))
async def update_workspace_by_name(
    org: str,
    name: str,
    request: Request,
    caller: Caller = guard(Action.UPDATE_WORKSPACE),
    app: Outpost = Depends(outpost),
) -> Response:
    return await _update(app, request, caller, lambda s: caller.workspace_by_name(s, org, name))


@router.delete("/workspaces/{workspace_id}", status_code=204)
async def delete_workspace(
    workspace_id: str, caller: Caller = guard(Action.DELETE_WORKSPACE), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        workspace = await caller.workspace(session, workspace_id, lock=True)
        await session.delete(workspace)
    return Response(status_code=204)


@router.delete("/organizations/{org}/workspaces/{name}", status_code=204)
async def delete_workspace_by_name(
    org: str, name: str, caller: Caller = guard(Action.DELETE_WORKSPACE), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        workspace = await caller.workspace_by_name(session, org, name)
        await session.delete(workspace)
    return Response(status_code=204)


# --- locks --------------------------------------------------------------------------------------


@router.post("/workspaces/{workspace_id}/actions/lock", openapi_extra=bodies.body("actions", required=False))
async def lock(
    workspace_id: str,
    request: Request,
    caller: Caller = guard(Action.LOCK_WORKSPACE),
    app: Outpost = Depends(outpost),
) -> Response:
    body = await jsonapi.read_body(request)
    attrs = jsonapi.attributes_of(body, required=False)
    reason = jsonapi.string(attrs, "reason") or jsonapi.string(body, "reason") or ""
    async with app.db.write() as session:
        workspace = await caller.workspace(session, workspace_id, lock=True)
        await ws_store.lock(session, workspace, caller.user_id, reason[:1000])
        data = await workspace_resource(session, caller, workspace)
    return jsonapi.document(data)


async def _unlock(app: Outpost, caller: Caller, workspace_id: str, force: bool) -> Response:
    async with app.db.write() as session:
        workspace = await caller.workspace(session, workspace_id, lock=True)
        await ws_store.unlock(session, workspace, caller.user_id, force=force)
        await runs_store.schedule(session, workspace)
        data = await workspace_resource(session, caller, workspace)
    return jsonapi.document(data)


@router.post("/workspaces/{workspace_id}/actions/unlock")
async def unlock(
    workspace_id: str, caller: Caller = guard(Action.LOCK_WORKSPACE), app: Outpost = Depends(outpost)
) -> Response:
    return await _unlock(app, caller, workspace_id, False)


@router.post("/workspaces/{workspace_id}/actions/force-unlock")
async def force_unlock(
    workspace_id: str, caller: Caller = guard(Action.FORCE_UNLOCK_WORKSPACE), app: Outpost = Depends(outpost)
) -> Response:
    return await _unlock(app, caller, workspace_id, True)


# --- variables ----------------------------------------------------------------------------------


@router.get("/workspaces/{workspace_id}/vars")
async def list_variables(
    workspace_id: str, caller: Caller = guard(Action.READ_VARIABLES), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        await caller.workspace(session, workspace_id)
        found = await ws_store.list_variables(session, workspace_id)
    return jsonapi.document([shapes.variable(v) for v in found])


@router.post("/workspaces/{workspace_id}/vars", status_code=201, openapi_extra=bodies.body("vars"))
async def create_variable(
    workspace_id: str,
    request: Request,
    caller: Caller = guard(Action.WRITE_VARIABLES),
    app: Outpost = Depends(outpost),
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "vars")
    attrs = jsonapi.attributes_of(body)
    async with app.db.write() as session:
        workspace = await caller.workspace(session, workspace_id)
        variable = await ws_store.create_variable(
            session,
            workspace,
            key=attrs.get("key"),
            value=attrs.get("value"),
            category=attrs.get("category"),
            hcl=bool(jsonapi.boolean(attrs, "hcl", False)),
            sensitive=bool(jsonapi.boolean(attrs, "sensitive", False)),
            description=jsonapi.string(attrs, "description"),
            box=app.box,
        )
    return jsonapi.document(shapes.variable(variable), status=201)


@router.patch("/workspaces/{workspace_id}/vars/{var_id}", openapi_extra=bodies.body("vars"))
async def update_variable(
    workspace_id: str,
    var_id: str,
    request: Request,
    caller: Caller = guard(Action.WRITE_VARIABLES),
    app: Outpost = Depends(outpost),
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "vars")
    attrs = jsonapi.attributes_of(body)
    async with app.db.write() as session:
        await caller.workspace(session, workspace_id)
        variable = await ws_store.get_variable(session, workspace_id, var_id)
        await ws_store.update_variable(session, variable, attrs, box=app.box)
    return jsonapi.document(shapes.variable(variable))


@router.delete("/workspaces/{workspace_id}/vars/{var_id}", status_code=204)
async def delete_variable(
    workspace_id: str, var_id: str, caller: Caller = guard(Action.WRITE_VARIABLES), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        await caller.workspace(session, workspace_id)
        await session.delete(await ws_store.get_variable(session, workspace_id, var_id))
    return Response(status_code=204)
