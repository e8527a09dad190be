"""Teams, team membership, organization memberships and team access to workspaces (Terraform Cloud's shapes).

Owners create teams and set their organization access; members with `manage-membership` invite users and
put them in teams (only owners touch the owners team); a workspace's admins grant teams access to it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Action, organization_allows
from outpost.errors import BadRequest, NotFound, Unprocessable
from outpost.server import jsonapi
from outpost.server.api import bodies, shapes
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import teams
from outpost.store import workspaces as ws_store
from outpost.store.tables import Team

router = APIRouter(tags=["teams"])


async def _team_resource(session: AsyncSession, caller: Caller, team: Team) -> jsonapi.Resource:
    standing = await caller.standing(session, team.organization_id)
    rights = standing.rights if standing else frozenset()
    permissions = {
        "can-update-membership": organization_allows(
            rights, Action.MANAGE_OWNERS if team.is_owners else Action.MANAGE_MEMBERSHIPS
        ),
        "can-destroy": not team.is_owners and organization_allows(rights, Action.MANAGE_TEAMS),
        "can-update-organization-access": not team.is_owners and organization_allows(rights, Action.MANAGE_TEAMS),
    }
    members = await teams.member_ids(session, team.id)
    return shapes.team(team, teams.organization_access(team), members, permissions)


async def _team(session: AsyncSession, caller: Caller, team_id: str, action: Action | None = None) -> Team:
    team = await teams.get_team(session, team_id)
    try:
        await caller.organization(session, team.organization_id, action)
    except NotFound:
        raise NotFound(f"Team {team_id!r} was not found.") from None
    return team


@router.get("/organizations/{org}/teams")
async def list_teams(
    org: str, request: Request, caller: Caller = guard(Action.READ_TEAMS), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    async with app.db.read() as session:
        await caller.organization(session, org)
        found = await teams.list_teams(session, org)
        data = [await _team_resource(session, caller, t) for t in found[page.offset : page.offset + page.size]]
    return jsonapi.document(data, meta=page.meta(len(found)))


@router.post("/organizations/{org}/teams", status_code=201, openapi_extra=bodies.body("teams"))
async def create_team(
    org: str, request: Request, caller: Caller = guard(Action.MANAGE_TEAMS), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "teams")
    attrs = jsonapi.attributes_of(body)
    async with app.db.write() as session:
        await caller.organization(session, org)
        team = await teams.create_team(session, org, attrs.get("name"), attrs.get("organization-access"))
        data = await _team_resource(session, caller, team)
    return jsonapi.document(data, status=201)


@router.get("/teams/{team_id}")
async def show_team(
    team_id: str, caller: Caller = guard(Action.READ_TEAMS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        team = await _team(session, caller, team_id)
        data = await _team_resource(session, caller, team)
    return jsonapi.document(data)


@router.patch("/teams/{team_id}", openapi_extra=bodies.body("teams"))
async def update_team(
    team_id: str, request: Request, caller: Caller = guard(Action.MANAGE_TEAMS), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "teams")
    attrs = jsonapi.attributes_of(body)
    async with app.db.write() as session:
        team = await _team(session, caller, team_id)
        if "name" in attrs:
            await teams.rename_team(session, team, attrs["name"])
        teams.set_organization_access(team, attrs.get("organization-access"))
        await session.flush()
        data = await _team_resource(session, caller, team)
    return jsonapi.document(data)


@router.delete("/teams/{team_id}", status_code=204)
async def delete_team(
    team_id: str, caller: Caller = guard(Action.MANAGE_TEAMS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        team = await _team(session, caller, team_id)
        await teams.delete_team(session, team)
    return Response(status_code=204)


# --- team membership ------------------------------------------------------------------------------


def _user_refs(body: dict[str, object]) -> list[str]:
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise Unprocessable('The body needs "data": a list of {"type": "users", "id": ...}.', title="invalid document")
    refs = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or item.get("type") not in ("users", None):
            raise Unprocessable('Each entry of "data" is {"type": "users", "id": <user id or username>}.')
        refs.append(str(item["id"]))
    return refs


async def _membership_change(app: Outpost, request: Request, caller: Caller, team_id: str, *, add: bool) -> Response:
    body = await jsonapi.read_body(request)
    refs = _user_refs(body)
    async with app.db.write() as session:
        team = await _team(session, caller, team_id)
        if team.is_owners:
            await caller.organization(session, team.organization_id, Action.MANAGE_OWNERS)
        await (teams.add_users if add else teams.remove_users)(session, team, refs)
    return Response(status_code=204)


@router.post("/teams/{team_id}/relationships/users", status_code=204, openapi_extra=bodies.user_list())
async def add_team_members(
    team_id: str, request: Request, caller: Caller = guard(Action.MANAGE_MEMBERSHIPS), app: Outpost = Depends(outpost)
) -> Response:
    return await _membership_change(app, request, caller, team_id, add=True)


@router.delete("/teams/{team_id}/relationships/users", status_code=204, openapi_extra=bodies.user_list())
async def remove_team_members(
    team_id: str, request: Request, caller: Caller = guard(Action.MANAGE_MEMBERSHIPS), app: Outpost = Depends(outpost)
) -> Response:
    return await _membership_change(app, request, caller, team_id, add=False)


# --- organization memberships ---------------------------------------------------------------------


@router.get("/organizations/{org}/organization-memberships")
async def list_memberships(
    org: str, request: Request, caller: Caller = guard(Action.READ_MEMBERSHIPS), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    async with app.db.read() as session:
        await caller.organization(session, org)
        found = await teams.list_memberships(session, org)
        data = [
            shapes.organization_membership(m, u, [t.id for t in await teams.teams_of(session, org, u.id)])
            for m, u in found[page.offset : page.offset + page.size]
        ]
    return jsonapi.document(data, meta=page.meta(len(found)))


@router.post(
    "/organizations/{org}/organization-memberships",
    status_code=201,
    openapi_extra=bodies.body("organization-memberships"),
)
async def invite_member(
    org: str, request: Request, caller: Caller = guard(Action.MANAGE_MEMBERSHIPS), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "organization-memberships")
    attrs = jsonapi.attributes_of(body)
    team_ids = jsonapi.relationship_ids(body, "teams") or []
    async with app.db.write() as session:
        await caller.organization(session, org)
        for team_id in team_ids:
            team = await session.get(Team, team_id)
            if team is None or team.organization_id != org:
                raise Unprocessable(f"Team {team_id!r} is not a team of {org}.", title="invalid team")
            if team.is_owners:
                await caller.organization(session, org, Action.MANAGE_OWNERS)
        membership = await teams.invite(session, org, attrs.get("email"), team_ids)
        user_teams = [t.id for t in await teams.teams_of(session, org, membership.user_id)]
        _, user = await teams.get_membership(session, membership.id)
        data = shapes.organization_membership(membership, user, user_teams)
    return jsonapi.document(data, status=201)


@router.get("/organization-memberships/{membership_id}")
async def show_membership(
    membership_id: str, caller: Caller = guard(Action.READ_MEMBERSHIPS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        membership, user = await teams.get_membership(session, membership_id)
        try:
            await caller.organization(session, membership.organization_id)
        except NotFound:
            raise NotFound(f"Organization membership {membership_id!r} was not found.") from None
        user_teams = [t.id for t in await teams.teams_of(session, membership.organization_id, user.id)]
    return jsonapi.document(shapes.organization_membership(membership, user, user_teams))


@router.delete("/organization-memberships/{membership_id}", status_code=204)
async def remove_membership(
    membership_id: str, caller: Caller = guard(Action.MANAGE_MEMBERSHIPS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        membership, user = await teams.get_membership(session, membership_id)
        try:
            await caller.organization(session, membership.organization_id)
        except NotFound:
            raise NotFound(f"Organization membership {membership_id!r} was not found.") from None
        if any(t.is_owners for t in await teams.teams_of(session, membership.organization_id, user.id)):
            await caller.organization(session, membership.organization_id, Action.MANAGE_OWNERS)
        await teams.remove_membership(session, membership)
    return Response(status_code=204)


# --- team access to workspaces --------------------------------------------------------------------


@router.get("/team-workspaces")
async def list_team_access(
    request: Request, caller: Caller = guard(Action.MANAGE_TEAM_ACCESS), app: Outpost = Depends(outpost)
) -> Response:
    workspace_id = request.query_params.get("filter[workspace][id]")
    if not workspace_id:
        raise BadRequest("List team access with filter[workspace][id]=<workspace id>.", title="filter required")
    page = jsonapi.Page(request)
    async with app.db.read() as session:
        await caller.workspace(session, workspace_id)
        found = await teams.list_access(session, workspace_id)
    data = [shapes.team_workspace(g) for g in found[page.offset : page.offset + page.size]]
    return jsonapi.document(data, meta=page.meta(len(found)))


@router.post("/team-workspaces", status_code=201, openapi_extra=bodies.body("team-workspaces"))
async def grant_team_access(
    request: Request, caller: Caller = guard(Action.MANAGE_TEAM_ACCESS), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "team-workspaces")
    level = teams.parse_access(jsonapi.attributes_of(body).get("access"))
    workspace_id = jsonapi.relationship_id(body, "workspace")
    team_id = jsonapi.relationship_id(body, "team")
    if workspace_id is None or team_id is None:
        raise Unprocessable("Team access needs a workspace and a team relationship.", title="invalid document")
    async with app.db.write() as session:
        workspace = await caller.workspace(session, workspace_id)
        team = await session.get(Team, team_id)
        if team is None or team.organization_id != workspace.organization_id:
            raise Unprocessable(f"Team {team_id!r} is not a team of {workspace.organization_id}.", title="invalid team")
        grant = await teams.grant_access(session, team, workspace, level)
    return jsonapi.document(shapes.team_workspace(grant), status=201)


@router.get("/team-workspaces/{access_id}")
async def show_team_access(
    access_id: str, caller: Caller = guard(Action.MANAGE_TEAM_ACCESS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        grant = await teams.get_access(session, access_id)
        await caller.check(session, await ws_store.get(session, grant.workspace_id), noun=f"Team access {access_id!r}")
    return jsonapi.document(shapes.team_workspace(grant))


@router.patch("/team-workspaces/{access_id}", openapi_extra=bodies.body("team-workspaces"))
async def update_team_access(
    access_id: str, request: Request, caller: Caller = guard(Action.MANAGE_TEAM_ACCESS), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "team-workspaces")
    level = teams.parse_access(jsonapi.attributes_of(body).get("access"))
    async with app.db.write() as session:
        grant = await teams.get_access(session, access_id)
        await caller.check(session, await ws_store.get(session, grant.workspace_id), noun=f"Team access {access_id!r}")
        grant.access = level.label
        await session.flush()
    return jsonapi.document(shapes.team_workspace(grant))


@router.delete("/team-workspaces/{access_id}", status_code=204)
async def revoke_team_access(
    access_id: str, caller: Caller = guard(Action.MANAGE_TEAM_ACCESS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        grant = await teams.get_access(session, access_id)
        await caller.check(session, await ws_store.get(session, grant.workspace_id), noun=f"Team access {access_id!r}")
        await session.delete(grant)
    return Response(status_code=204)
