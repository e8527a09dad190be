"""Configuration versions and their capability upload URL."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from outpost.domain.permissions import Action
from outpost.errors import NotFound
from outpost.server import jsonapi
from outpost.server.api import bodies, shapes
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import archives, configs
from outpost.store import runs as runs_store
from outpost.store import workspaces as ws_store
from outpost.store.runs import RunOptions
from outpost.store.tables import ConfigurationVersion

router = APIRouter(tags=["configuration-versions"])


def upload_url(app: Outpost, request: Request, cv: ConfigurationVersion) -> str:
    # A capability in the path: pytfe uploads with no Authorization header.
    return f"{app.base_url(request)}/api/v2/uploads/{cv.id}/{app.capability('upload', cv.id)}"


@router.post(
    "/workspaces/{workspace_id}/configuration-versions",
    status_code=201,
    openapi_extra=bodies.body("configuration-versions", required=False),
)
async def create(
    workspace_id: str, request: Request, caller: Caller = guard(Action.QUEUE_RUN), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "configuration-versions")
    attrs = jsonapi.attributes_of(body, required=False)
    async with app.db.write() as session:
        workspace = await caller.workspace(session, workspace_id)
        cv = await configs.create(
            session,
            workspace,
            speculative=bool(jsonapi.boolean(attrs, "speculative", False)),
            auto_queue_runs=bool(jsonapi.boolean(attrs, "auto-queue-runs", True)),
            source=jsonapi.string(attrs, "source") or "tfe-api",
        )
    return jsonapi.document(shapes.configuration_version(cv, upload_url(app, request, cv)), status=201)


@router.get("/workspaces/{workspace_id}/configuration-versions")
async def list_for_workspace(
    workspace_id: str,
    request: Request,
    caller: Caller = guard(Action.READ_CONFIGURATIONS),
    app: Outpost = Depends(outpost),
) -> Response:
    async with app.db.read() as session:
        await caller.workspace(session, workspace_id)
        found = await configs.list_for(session, workspace_id)
    return jsonapi.document([shapes.configuration_version(cv, upload_url(app, request, cv)) for cv in found])


@router.get("/configuration-versions/{cv_id}")
async def show(
    cv_id: str, request: Request, caller: Caller = guard(Action.READ_CONFIGURATIONS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        cv = await configs.get(session, cv_id)
        await caller.workspace_of(session, cv.workspace_id, f"Configuration version {cv_id!r}")
    return jsonapi.document(shapes.configuration_version(cv, upload_url(app, request, cv)))


@router.put("/uploads/{cv_id}/{capability}", openapi_extra=bodies.ARCHIVE)
async def upload(cv_id: str, capability: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    if not app.check_capability("upload", cv_id, capability):
        raise NotFound("Unknown upload URL.")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > archives.MAX_ARCHIVE_BYTES:
            raise archives.bad(f"The archive is over {archives.MAX_ARCHIVE_BYTES} bytes.")
    async with app.db.write() as session:
        cv = await configs.get(session, cv_id)
        await configs.upload(session, cv, bytes(data))
        if cv.auto_queue_runs and not cv.speculative:
            workspace = await ws_store.get(session, cv.workspace_id, lock=True)
            if workspace.execution_mode != "local":
                await runs_store.create(
                    session,
                    workspace,
                    cv,
                    RunOptions(source="tfe-configuration-version", message="Queued by a configuration upload"),
                )
    return Response(status_code=200)
