"""Plans, applies, and their logs over the archivist protocol that go-tfe's LogReader speaks.

The log-read URL is a capability (go-tfe sends no Authorization header and overwrites the query). The
stream is framed: STX first, then the raw log, then ETX once every byte is stored; a phase is reported
final only after its log is complete, so a reader never stops early.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Action
from outpost.errors import BadRequest, NotFound
from outpost.server import jsonapi
from outpost.server.api import shapes
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import blobs, logs
from outpost.store.tables import Apply, Plan

router = APIRouter(tags=["plans-and-applies"])

STX, ETX = b"\x02", b"\x03"
DEFAULT_LIMIT = 64 * 1024 * 1024


def log_url(app: Outpost, request: Request, phase_id: str) -> str:
    return f"{app.base_url(request)}/api/v2/logs/{phase_id}/{app.capability('log', phase_id)}"


async def _plan(session: AsyncSession, caller: Caller, plan_id: str) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f"Plan {plan_id!r} was not found.")
    try:
        await caller.run(session, plan.run_id)
    except NotFound:
        raise NotFound(f"Plan {plan_id!r} was not found.") from None
    return plan


@router.get("/plans/{plan_id}")
async def show_plan(
    plan_id: str, request: Request, caller: Caller = guard(Action.READ_RUNS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        plan = await _plan(session, caller, plan_id)
    return jsonapi.document(shapes.plan(plan, log_url(app, request, plan.id)))


@router.get("/plans/{plan_id}/json-output")
async def plan_json(
    plan_id: str, caller: Caller = guard(Action.READ_PLAN_JSON), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        plan = await _plan(session, caller, plan_id)
        if plan.plan_json_blob_id is None:
            raise NotFound("The plan has no JSON output yet.")
        data = await blobs.get(session, plan.plan_json_blob_id)
    return Response(data, media_type="application/json")


@router.get("/runs/{run_id}/plan")
async def run_plan(
    run_id: str, request: Request, caller: Caller = guard(Action.READ_RUNS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        await caller.run(session, run_id)
        plan = (await session.execute(select(Plan).where(Plan.run_id == run_id))).scalar_one()
    return jsonapi.document(shapes.plan(plan, log_url(app, request, plan.id)))


@router.get("/applies/{apply_id}")
async def show_apply(
    apply_id: str, request: Request, caller: Caller = guard(Action.READ_RUNS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        apply = await session.get(Apply, apply_id)
        if apply is None:
            raise NotFound(f"Apply {apply_id!r} was not found.")
        try:
            await caller.run(session, apply.run_id)
        except NotFound:
            raise NotFound(f"Apply {apply_id!r} was not found.") from None
    return jsonapi.document(shapes.apply(apply, log_url(app, request, apply.id)))


@router.get("/runs/{run_id}/apply")
async def run_apply(
    run_id: str, request: Request, caller: Caller = guard(Action.READ_RUNS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        await caller.run(session, run_id)
        apply = (await session.execute(select(Apply).where(Apply.run_id == run_id))).scalar_one()
    return jsonapi.document(shapes.apply(apply, log_url(app, request, apply.id)))


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number.") from None
    if value < 0:
        raise BadRequest(f"{name} must not be negative.")
    return value


@router.get("/logs/{log_id}/{capability}")
async def read_log(log_id: str, capability: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    if not (log_id.startswith(("plan-", "apply-")) and app.check_capability("log", log_id, capability)):
        raise NotFound("Unknown log URL.")
    offset = _int(request, "offset", 0)
    limit = min(_int(request, "limit", DEFAULT_LIMIT), DEFAULT_LIMIT)
    table = logs.table_for(log_id)
    async with app.db.read() as session:
        row = (await session.execute(select(table.log_size, table.log_complete).where(table.id == log_id))).first()
        if row is None:
            raise NotFound("Unknown log URL.")
        size, complete = row
        out = bytearray()
        if offset == 0 and limit > 0:
            out += STX
        raw_offset = max(offset - 1, 0)
        want = limit - len(out)
        if want > 0 and raw_offset < size:
            out += await logs.read(session, log_id, raw_offset, min(want, size - raw_offset))
        end = raw_offset + (len(out) - (1 if offset == 0 and limit > 0 else 0))
        if complete and end >= size and len(out) < limit and offset <= size + 1:
            out += ETX
    if not complete:
        await app.watch_log(log_id)
    return Response(bytes(out), media_type="text/plain")
