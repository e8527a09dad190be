"""State versions, their outputs and the capability download URL."""

from __future__ import annotations

import base64
import binascii
import hashlib

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Action
from outpost.errors import Conflict, NotFound, Unprocessable
from outpost.server import jsonapi
from outpost.server.api import bodies, shapes
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import blobs, state
from outpost.store.tables import Run, StateVersion

router = APIRouter(tags=["state-versions"])


def download_url(app: Outpost, request: Request, sv: StateVersion) -> str:
    return f"{app.base_url(request)}/api/v2/state-versions/{sv.id}/download/{app.capability('state', sv.id)}"


async def _resource(session: AsyncSession, app: Outpost, request: Request, sv: StateVersion) -> jsonapi.Resource:
    outputs = await state.outputs(session, sv.id)
    return shapes.state_version(sv, download_url(app, request, sv), [o.id for o in outputs])


async def _visible(session: AsyncSession, caller: Caller, sv_id: str) -> StateVersion:
    sv = await state.get(session, sv_id)
    await caller.workspace_of(session, sv.workspace_id, f"State version {sv_id!r}")
    return sv


@router.get("/workspaces/{workspace_id}/current-state-version")
async def current(
    workspace_id: str, request: Request, caller: Caller = guard(Action.READ_STATE), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        workspace = await caller.workspace(session, workspace_id)
        sv = await state.current(session, workspace)
        if sv is None:
            raise NotFound(f"Workspace {workspace.name} has no state yet.")
        return jsonapi.document(await _resource(session, app, request, sv))


@router.get("/workspaces/{workspace_id}/current-state-version-outputs")
async def current_outputs(
    workspace_id: str, caller: Caller = guard(Action.READ_STATE_OUTPUTS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        workspace = await caller.workspace(session, workspace_id)
        sv = await state.current(session, workspace)
        if sv is None:
            raise NotFound(f"Workspace {workspace.name} has no state yet.")
        outputs = await state.outputs(session, sv.id)
    return jsonapi.document([shapes.state_version_output(o) for o in outputs])


@router.get("/workspaces/{workspace_id}/state-versions")
async def list_for_workspace(
    workspace_id: str, request: Request, caller: Caller = guard(Action.READ_STATE), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    async with app.db.read() as session:
        await caller.workspace(session, workspace_id)
        found = await state.list_for(session, workspace_id)
        total = len(found)
        data = [await _resource(session, app, request, sv) for sv in found[page.offset : page.offset + page.size]]
    return jsonapi.document(data, meta=page.meta(total))


@router.get("/state-versions/{sv_id}")
async def show(
    sv_id: str, request: Request, caller: Caller = guard(Action.READ_STATE), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        sv = await _visible(session, caller, sv_id)
        return jsonapi.document(await _resource(session, app, request, sv))


@router.get("/state-versions/{sv_id}/outputs")
async def outputs(
    sv_id: str, caller: Caller = guard(Action.READ_STATE_OUTPUTS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        await _visible(session, caller, sv_id)
        found = await state.outputs(session, sv_id)
    return jsonapi.document([shapes.state_version_output(o) for o in found])


@router.get("/state-versions/{sv_id}/download/{capability}")
async def download(sv_id: str, capability: str, app: Outpost = Depends(outpost)) -> Response:
    if not app.check_capability("state", sv_id, capability):
        raise NotFound("Unknown state download URL.")
    async with app.db.read() as session:
        sv = await state.get(session, sv_id)
        data = await blobs.get(session, sv.blob_id)
    return Response(data, media_type="application/json")


@router.post("/workspaces/{workspace_id}/state-versions", status_code=201, openapi_extra=bodies.body("state-versions"))
async def create(
    workspace_id: str, request: Request, caller: Caller = guard(Action.CREATE_STATE), app: Outpost = Depends(outpost)
) -> Response:
    """State pushed by a client (terraform state push, local execution): the caller must hold the lock."""
    async with app.db.read() as session:
        # Refuse a caller who may not push state before reading and checking a body of up to 64 MB.
        await caller.workspace(session, workspace_id)
    body = await jsonapi.read_body(request, limit=64 * 1024 * 1024)
    jsonapi.expect_type(body, "state-versions")
    attrs = jsonapi.attributes_of(body)
    encoded = jsonapi.string(attrs, "state")
    if not encoded:
        raise Unprocessable('A state version needs "state": the base64 of the state file.', title="state required")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable('"state" is not valid base64.', title="invalid state") from None
    md5 = jsonapi.string(attrs, "md5")
    if md5 and md5 != hashlib.md5(raw, usedforsecurity=False).hexdigest():
        raise Unprocessable('"md5" does not match the state sent.', title="checksum mismatch")
    parsed = state.parse_state(raw)
    serial = attrs.get("serial")
    if serial is not None and serial != parsed["serial"]:
        raise Unprocessable('"serial" does not match the state sent.', title="serial mismatch")
    async with app.db.write() as session:
        workspace = await caller.workspace(session, workspace_id, lock=True)
        if not workspace.locked or workspace.locked_by_user_id != caller.user_id:
            raise Conflict(
                "Lock the workspace before uploading state (POST .../actions/lock).", title="workspace not locked"
            )
        latest = await state.current(session, workspace)
        if (
            latest is not None
            and not attrs.get("force")
            and parsed["serial"] <= latest.serial
            and latest.lineage == parsed.get("lineage")
        ):
            raise Conflict(
                f"Serial {parsed['serial']} is not newer than the current serial {latest.serial}.",
                title="serial conflict",
            )
        run_id = jsonapi.relationship_id(body, "run")
        linked = await session.get(Run, run_id) if run_id is not None else None
        if run_id is not None and (linked is None or linked.workspace_id != workspace.id):
            raise Unprocessable(f"Run {run_id!r} is not a run of this workspace.", title="invalid run")
        sv = await state.create(session, workspace, raw, run_id=run_id)
        data = await _resource(session, app, request, sv)
    return jsonapi.document(data, status=201)
