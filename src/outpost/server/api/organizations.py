"""Organizations and their entitlement set."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from outpost.domain.permissions import Action
from outpost.errors import Unprocessable
from outpost.server import jsonapi
from outpost.server.api import bodies, shapes
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import pools, users

router = APIRouter(tags=["organizations"])


@router.get("/organizations")
async def list_organizations(
    request: Request, caller: Caller = guard(Action.READ_ACCOUNT), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        orgs = await users.organizations_of(session, caller.user_id)
        data = [shapes.organization(o, await caller.org_permissions(session, o.id)) for o in orgs]
    return jsonapi.document(data)


@router.post("/organizations", status_code=201, openapi_extra=bodies.body("organizations"))
async def create_organization(
    request: Request, caller: Caller = guard(Action.CREATE_ORGANIZATION), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "organizations")
    attrs = jsonapi.attributes_of(body)
    name = attrs.get("name")
    email = jsonapi.string(attrs, "email")
    if not email or "@" not in email or len(email) > 320:
        raise Unprocessable("An organization needs an email address.", title="invalid email")
    async with app.db.write() as session:
        org = await users.create_organization(session, name, email)  # type: ignore[arg-type]
        team = await users.owners_team(session, org.id)
        await users.add_member(session, team.id, caller.user_id)
        data = shapes.organization(org, await caller.org_permissions(session, org.id))
    return jsonapi.document(data, status=201)


@router.get("/organizations/{org}")
async def show_organization(
    org: str, request: Request, caller: Caller = guard(Action.READ_ORGANIZATION), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        await caller.organization(session, org)
        found = await users.get_organization(session, org)
        data = shapes.organization(found, await caller.org_permissions(session, org))
    return jsonapi.document(data)


@router.delete("/organizations/{org}", status_code=204)
async def delete_organization(
    org: str, request: Request, caller: Caller = guard(Action.DELETE_ORGANIZATION), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        await caller.organization(session, org)
        found = await users.get_organization(session, org)
        await pools.wake_agents_of(session, [p.id for p in await pools.list_pools(session, found.id)])
        await session.delete(found)
    return Response(status_code=204)


@router.get("/organizations/{org}/entitlement-set")
async def entitlement_set(
    org: str, request: Request, caller: Caller = guard(Action.READ_ORGANIZATION), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        await caller.organization(session, org)
    return jsonapi.document(shapes.entitlement_set(org))
