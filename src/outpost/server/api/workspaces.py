"""Workspaces: settings, locks and variables."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.errors import NotFound
from outpost.server import jsonapi
from outpost.server.api import shapes
from outpost.server.auth import member, principal
from outpost.server.context import Outpost, outpost
from outpost.store import runs as runs_store
from outpost.store import workspaces as ws_store
from outpost.store.tables import Workspace
from outpost.store.users import Principal
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


async def workspace_for(session: AsyncSession, who: Principal, workspace_id: str, *, lock: bool = False) -> Workspace:
    """The workspace, if the caller belongs to its organization; 404 otherwise (others' are invisible)."""
    workspace = await ws_store.get(session, workspace_id, lock=lock)
    try:
        await member(session, who, workspace.organization_id)
    except NotFound:
        raise NotFound(f"Workspace {workspace_id!r} was not found.") from None
    return workspace


async def _by_name(session: AsyncSession, who: Principal, org: str, name: str) -> Workspace:
    await member(session, who, org)
    return await ws_store.get_by_name(session, org, name)


@router.get("/organizations/{org}/workspaces")
async def list_workspaces(
    org: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    search = request.query_params.get("search[name]") or request.query_params.get("q")
    async with app.db.read() as session:
        await member(session, who, org)
        found, total = await ws_store.list_for(session, org, search=search, offset=page.offset, limit=page.size)
    return jsonapi.document([shapes.workspace(w) for w in found], meta=page.meta(total))


@router.post("/organizations/{org}/workspaces", status_code=201)
async def create_workspace(
    org: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    settings = _settings(await jsonapi.read_body(request))
    async with app.db.write() as session:
        await member(session, who, org)
        workspace = await ws_store.create(session, org, settings)
    return jsonapi.document(shapes.workspace(workspace), status=201)


@router.get("/organizations/{org}/workspaces/{name}")
async def show_workspace_by_name(
    org: str, name: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        workspace = await _by_name(session, who, org, name)
    return jsonapi.document(shapes.workspace(workspace))


@router.get("/workspaces/{workspace_id}")
async def show_workspace(
    workspace_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        workspace = await workspace_for(session, who, workspace_id)
    return jsonapi.document(shapes.workspace(workspace))


async def _update(app: Outpost, request: Request, loader: Any) -> Response:
    settings = _settings(await jsonapi.read_body(request))
    async with app.db.write() as session:
        workspace = await loader(session)
        await ws_store.apply_settings(session, workspace, settings)
    return jsonapi.document(shapes.workspace(workspace))


@router.patch("/workspaces/{workspace_id}")
async def update_workspace(
    workspace_id: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    return await _update(app, request, lambda s: workspace_for(s, who, workspace_id, lock=True))


@router.patch("/organizations/{org}/workspaces/{name}")
async def update_workspace_by_name(
    org: str, name: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    return await _update(app, request, lambda s: _by_name(s, who, org, name))


@router.delete("/workspaces/{workspace_id}", status_code=204)
async def delete_workspace(
    workspace_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        workspace = await workspace_for(session, who, workspace_id, lock=True)
        await session.delete(workspace)
    return Response(status_code=204)


@router.delete("/organizations/{org}/workspaces/{name}", status_code=204)
async def delete_workspace_by_name(
    org: str, name: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        workspace = await _by_name(session, who, org, name)
        await session.delete(workspace)
    return Response(status_code=204)


# --- locks --------------------------------------------------------------------------------------


@router.post("/workspaces/{workspace_id}/actions/lock")
async def lock(
    workspace_id: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    attrs = jsonapi.attributes_of(body, required=False)
    reason = jsonapi.string(attrs, "reason") or jsonapi.string(body, "reason") or ""
    async with app.db.write() as session:
        workspace = await workspace_for(session, who, workspace_id, lock=True)
        await ws_store.lock(session, workspace, who.user_id, reason)
    return jsonapi.document(shapes.workspace(workspace))


async def _unlock(app: Outpost, who: Principal, workspace_id: str, force: bool) -> Response:
    async with app.db.write() as session:
        workspace = await workspace_for(session, who, workspace_id, lock=True)
        await ws_store.unlock(session, workspace, who.user_id, force=force)
        await runs_store.schedule(session, workspace)
    return jsonapi.document(shapes.workspace(workspace))


@router.post("/workspaces/{workspace_id}/actions/unlock")
async def unlock(workspace_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    return await _unlock(app, who, workspace_id, False)


@router.post("/workspaces/{workspace_id}/actions/force-unlock")
async def force_unlock(
    workspace_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    return await _unlock(app, who, workspace_id, True)


# --- variables ----------------------------------------------------------------------------------


@router.get("/workspaces/{workspace_id}/vars")
async def list_variables(
    workspace_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        await workspace_for(session, who, workspace_id)
        found = await ws_store.list_variables(session, workspace_id)
    return jsonapi.document([shapes.variable(v) for v in found])


@router.post("/workspaces/{workspace_id}/vars", status_code=201)
async def create_variable(
    workspace_id: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    attrs = jsonapi.attributes_of(await jsonapi.read_body(request))
    async with app.db.write() as session:
        workspace = await workspace_for(session, who, workspace_id)
        variable = await ws_store.create_variable(
            session,
            workspace,
            key=attrs.get("key"),
            value=attrs.get("value"),
            category=attrs.get("category"),
            hcl=bool(jsonapi.boolean(attrs, "hcl", False)),
            sensitive=bool(jsonapi.boolean(attrs, "sensitive", False)),
            description=jsonapi.string(attrs, "description"),
        )
    return jsonapi.document(shapes.variable(variable), status=201)


@router.patch("/workspaces/{workspace_id}/vars/{var_id}")
async def update_variable(
    workspace_id: str,
    var_id: str,
    request: Request,
    who: Principal = Depends(principal),
    app: Outpost = Depends(outpost),
) -> Response:
    attrs = jsonapi.attributes_of(await jsonapi.read_body(request))
    async with app.db.write() as session:
        await workspace_for(session, who, workspace_id)
        variable = await ws_store.get_variable(session, workspace_id, var_id)
        await ws_store.update_variable(
            session,
            variable,
            key=(jsonapi.string(attrs, "key") or variable.key) if "key" in attrs else None,
            value=(jsonapi.string(attrs, "value") or "") if "value" in attrs else None,
            hcl=bool(jsonapi.boolean(attrs, "hcl")) if "hcl" in attrs else None,
            description=jsonapi.string(attrs, "description") if "description" in attrs else ws_store.UNSET,
            sensitive=jsonapi.boolean(attrs, "sensitive"),
        )
    return jsonapi.document(shapes.variable(variable))


@router.delete("/workspaces/{workspace_id}/vars/{var_id}", status_code=204)
async def delete_variable(
    workspace_id: str, var_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        await workspace_for(session, who, workspace_id)
        await session.delete(await ws_store.get_variable(session, workspace_id, var_id))
    return Response(status_code=204)
