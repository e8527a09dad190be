"""Organizations and their entitlement set."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from outpost.errors import Unprocessable
from outpost.server import jsonapi
from outpost.server.api import shapes
from outpost.server.auth import member, owner, principal
from outpost.server.context import Outpost, outpost
from outpost.store import users
from outpost.store.users import Principal

router = APIRouter(tags=["organizations"])


@router.get("/organizations")
async def list_organizations(who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        orgs = await users.organizations_of(session, who.user_id)
    return jsonapi.document([shapes.organization(o) for o in orgs])


@router.post("/organizations", status_code=201)
async def create_organization(
    request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    attrs = jsonapi.attributes_of(await jsonapi.read_body(request))
    name = attrs.get("name")
    email = jsonapi.string(attrs, "email")
    if not email or "@" not in email:
        raise Unprocessable("An organization needs an email address.", title="invalid email")
    async with app.db.write() as session:
        org = await users.create_organization(session, name, email)  # type: ignore[arg-type]
        team = await users.owners_team(session, org.id)
        await users.add_member(session, team.id, who.user_id)
    return jsonapi.document(shapes.organization(org), status=201)


@router.get("/organizations/{org}")
async def show_organization(org: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        await member(session, who, org)
        found = await users.get_organization(session, org)
    return jsonapi.document(shapes.organization(found))


@router.delete("/organizations/{org}", status_code=204)
async def delete_organization(
    org: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        await owner(session, who, org)
        found = await users.get_organization(session, org)
        await session.delete(found)
    return Response(status_code=204)


@router.get("/organizations/{org}/entitlement-set")
async def entitlement_set(org: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        await member(session, who, org)
    return jsonapi.document(shapes.entitlement_set(org))
