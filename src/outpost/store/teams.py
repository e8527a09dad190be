"""Teams, their members, organization memberships and team access to workspaces."""

from __future__ import annotations

import re

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import TEAM_ORG_ACCESS, Access
from outpost.errors import Conflict, NotFound, Unprocessable
from outpost.ids import new_id
from outpost.store import users
from outpost.store.tables import OrganizationMembership, Team, TeamMember, TeamWorkspace, User, Workspace
from outpost.timeutil import utcnow

_TEAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# Team columns behind each `organization-access` flag.
_ORG_ACCESS_COLUMNS = {name: name.replace("-", "_") for name in TEAM_ORG_ACCESS}


def check_team_name(name: object) -> str:
    if not isinstance(name, str) or not _TEAM_NAME.match(name):
        raise Unprocessable(
            "A team name is 1 to 100 characters of letters, digits, '-' and '_'.", title="invalid team name"
        )
    return name


def organization_access(team: Team) -> dict[str, bool]:
    if team.is_owners:
        return dict.fromkeys(_ORG_ACCESS_COLUMNS, True)
    return {name: bool(getattr(team, column)) for name, column in _ORG_ACCESS_COLUMNS.items()}


def set_organization_access(team: Team, flags: object) -> None:
    if flags is None:
        return
    if not isinstance(flags, dict):
        raise Unprocessable('"organization-access" must be an object of true/false flags.', title="invalid team")
    if team.is_owners:
        raise Unprocessable("The owners team holds every right; its organization access cannot change.")
    for name, value in flags.items():
        if name not in _ORG_ACCESS_COLUMNS:
            continue  # Terraform Cloud has more flags than Outpost has features; ignore the rest
        if not isinstance(value, bool):
            raise Unprocessable(f'"organization-access.{name}" must be true or false.', title="invalid team")
        setattr(team, _ORG_ACCESS_COLUMNS[name], value)


async def list_teams(session: AsyncSession, org_id: str) -> list[Team]:
    return list(
        (await session.execute(select(Team).where(Team.organization_id == org_id).order_by(Team.name))).scalars()
    )


async def get_team(session: AsyncSession, team_id: str) -> Team:
    team = await session.get(Team, team_id)
    if team is None:
        raise NotFound(f"Team {team_id!r} was not found.")
    return team


async def create_team(session: AsyncSession, org_id: str, name: object, flags: object) -> Team:
    name = check_team_name(name)
    if (await session.execute(select(Team.id).where(Team.organization_id == org_id, Team.name == name))).first():
        raise Conflict(f"A team named {name!r} already exists in {org_id}.", title="name taken")
    team = Team(
        id=new_id("team"),
        organization_id=org_id,
        name=name,
        is_owners=False,
        read_workspaces=False,
        manage_workspaces=False,
        manage_membership=False,
        created_at=utcnow(),
    )
    set_organization_access(team, flags)
    session.add(team)
    await session.flush()
    return team


async def rename_team(session: AsyncSession, team: Team, name: object) -> None:
    name = check_team_name(name)
    if name == team.name:
        return
    if team.is_owners:
        raise Unprocessable("The owners team cannot be renamed.", title="owners team")
    taken = await session.execute(
        select(Team.id).where(Team.organization_id == team.organization_id, Team.name == name)
    )
    if taken.first():
        raise Conflict(f"A team named {name!r} already exists.", title="name taken")
    team.name = name


async def delete_team(session: AsyncSession, team: Team) -> None:
    if team.is_owners:
        raise Unprocessable("The owners team cannot be deleted.", title="owners team")
    await session.delete(team)
    await session.flush()


async def member_ids(session: AsyncSession, team_id: str) -> list[str]:
    return list(
        (
            await session.execute(
                select(TeamMember.user_id).where(TeamMember.team_id == team_id).order_by(TeamMember.user_id)
            )
        ).scalars()
    )


async def resolve_users(session: AsyncSession, org_id: str, refs: list[str]) -> list[User]:
    """Users named by id or username (Terraform Cloud's team-membership API uses usernames)."""
    found: list[User] = []
    for ref in dict.fromkeys(refs):
        user = (
            await session.execute(
                select(User)
                .join(OrganizationMembership, OrganizationMembership.user_id == User.id)
                .where(OrganizationMembership.organization_id == org_id, or_(User.id == ref, User.username == ref))
            )
        ).scalar_one_or_none()
        if user is None:
            raise Unprocessable(
                f"User {ref!r} is not a member of {org_id}: invite them first (organization-memberships).",
                title="not a member",
            )
        found.append(user)
    return found


async def add_users(session: AsyncSession, team: Team, refs: list[str]) -> None:
    for user in await resolve_users(session, team.organization_id, refs):
        await users.add_member(session, team.id, user.id)


async def remove_users(session: AsyncSession, team: Team, refs: list[str]) -> None:
    targets = await resolve_users(session, team.organization_id, refs)
    if team.is_owners:
        remaining = set(await member_ids(session, team.id)) - {u.id for u in targets}
        if not remaining:
            raise Unprocessable("The owners team must keep at least one member.", title="last owner")
    await session.execute(
        delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id.in_([u.id for u in targets]))
    )
    await session.flush()


# --- organization memberships ---------------------------------------------------------------------


async def list_memberships(session: AsyncSession, org_id: str) -> list[tuple[OrganizationMembership, User]]:
    rows = await session.execute(
        select(OrganizationMembership, User)
        .join(User, User.id == OrganizationMembership.user_id)
        .where(OrganizationMembership.organization_id == org_id)
        .order_by(User.email)
    )
    return [(m, u) for m, u in rows.all()]


async def get_membership(session: AsyncSession, membership_id: str) -> tuple[OrganizationMembership, User]:
    row = (
        await session.execute(
            select(OrganizationMembership, User)
            .join(User, User.id == OrganizationMembership.user_id)
            .where(OrganizationMembership.id == membership_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"Organization membership {membership_id!r} was not found.")
    return row[0], row[1]


async def teams_of(session: AsyncSession, org_id: str, user_id: str) -> list[Team]:
    return list(
        (
            await session.execute(
                select(Team)
                .join(TeamMember, TeamMember.team_id == Team.id)
                .where(Team.organization_id == org_id, TeamMember.user_id == user_id)
                .order_by(Team.name)
            )
        ).scalars()
    )


async def invite(session: AsyncSession, org_id: str, email: object, team_ids: list[str]) -> OrganizationMembership:
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise Unprocessable("An organization membership needs the user's email address.", title="invalid email")
    teams = [await get_team(session, t) for t in team_ids]
    if any(t.organization_id != org_id for t in teams):
        raise Unprocessable("Teams must belong to the organization.", title="invalid team")
    user = await users.ensure_user(session, email)
    membership = await users.ensure_membership(session, org_id, user.id)
    for team in teams:
        await users.add_member(session, team.id, user.id)
    return membership


async def remove_membership(session: AsyncSession, membership: OrganizationMembership) -> None:
    owners = await users.owners_team(session, membership.organization_id)
    owner_ids = await member_ids(session, owners.id)
    if owner_ids == [membership.user_id]:
        raise Unprocessable("The organization's last owner cannot leave it.", title="last owner")
    team_ids = select(Team.id).where(Team.organization_id == membership.organization_id)
    await session.execute(
        delete(TeamMember).where(TeamMember.user_id == membership.user_id, TeamMember.team_id.in_(team_ids))
    )
    await session.delete(membership)
    await session.flush()


# --- team access to workspaces --------------------------------------------------------------------


def parse_access(value: object) -> Access:
    try:
        return Access.parse(value)
    except ValueError as exc:
        raise Unprocessable(f'"access": {exc} (custom access is not supported).', title="invalid access") from None


async def list_access(session: AsyncSession, workspace_id: str) -> list[TeamWorkspace]:
    return list(
        (
            await session.execute(
                select(TeamWorkspace)
                .where(TeamWorkspace.workspace_id == workspace_id)
                .order_by(TeamWorkspace.created_at)
            )
        ).scalars()
    )


async def get_access(session: AsyncSession, access_id: str) -> TeamWorkspace:
    grant = await session.get(TeamWorkspace, access_id)
    if grant is None:
        raise NotFound(f"Team access {access_id!r} was not found.")
    return grant


async def grant_access(session: AsyncSession, team: Team, workspace: Workspace, level: Access) -> TeamWorkspace:
    if team.organization_id != workspace.organization_id:
        raise Unprocessable("The team and the workspace belong to different organizations.", title="invalid team")
    exists = await session.execute(
        select(func.count())
        .select_from(TeamWorkspace)
        .where(TeamWorkspace.team_id == team.id, TeamWorkspace.workspace_id == workspace.id)
    )
    if exists.scalar_one():
        raise Conflict(
            f"Team {team.name!r} already has access to workspace {workspace.name!r}: update that access instead.",
            title="access exists",
        )
    grant = TeamWorkspace(
        id=new_id("tws"), team_id=team.id, workspace_id=workspace.id, access=level.label, created_at=utcnow()
    )
    session.add(grant)
    await session.flush()
    return grant
