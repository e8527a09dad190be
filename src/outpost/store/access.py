"""Who holds what: organization membership, the rights teams grant, and workspace access levels.

The rules themselves are in `outpost.domain.permissions`; this module only looks up the facts they need.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Access, OrgRight, implied_access, rights_of
from outpost.store.tables import OrganizationMembership, Team, TeamMember, TeamWorkspace


@dataclass(frozen=True)
class Standing:
    """A member's place in one organization."""

    organization_id: str
    user_id: str
    rights: frozenset[OrgRight]
    team_ids: frozenset[str]

    @property
    def is_owner(self) -> bool:
        return OrgRight.OWNER in self.rights

    @property
    def implied(self) -> Access:
        """The access every workspace of the organization gets from the member's organization rights."""
        return implied_access(self.rights)


# Every API request asks for the caller's standing: statements built once (building one costs more
# than SQLite running it).
_MEMBER = select(OrganizationMembership.id).where(
    OrganizationMembership.organization_id == bindparam("org_id"),
    OrganizationMembership.user_id == bindparam("user_id"),
)
_TEAMS = (
    select(Team.id, Team.is_owners, Team.read_workspaces, Team.manage_workspaces, Team.manage_membership)
    .join(TeamMember, TeamMember.team_id == Team.id)
    .where(Team.organization_id == bindparam("org_id"), TeamMember.user_id == bindparam("user_id"))
)


async def standing(session: AsyncSession, user_id: str, org_id: str) -> Standing | None:
    """None when the user is not a member of the organization."""
    ids = {"org_id": org_id, "user_id": user_id}
    if (await session.execute(_MEMBER, ids)).first() is None:
        return None
    teams = (await session.execute(_TEAMS, ids)).all()
    rights = rights_of(
        owner=any(t.is_owners for t in teams),
        team_flags=[
            {
                "read-workspaces": t.read_workspaces,
                "manage-workspaces": t.manage_workspaces,
                "manage-membership": t.manage_membership,
            }
            for t in teams
        ],
    )
    return Standing(organization_id=org_id, user_id=user_id, rights=rights, team_ids=frozenset(t.id for t in teams))


async def workspace_levels(
    session: AsyncSession, who: Standing, workspace_ids: list[str] | None = None
) -> dict[str, Access]:
    """Access granted through the member's teams, by workspace (only workspaces with a grant are listed).

    Organization rights come on top: see `level`.
    """
    if not who.team_ids:
        return {}
    query = select(TeamWorkspace.workspace_id, TeamWorkspace.access).where(TeamWorkspace.team_id.in_(who.team_ids))
    if workspace_ids is not None:
        query = query.where(TeamWorkspace.workspace_id.in_(workspace_ids))
    levels: dict[str, Access] = {}
    for workspace_id, access in (await session.execute(query)).all():
        level = Access.parse(access)
        levels[workspace_id] = max(levels.get(workspace_id, Access.NONE), level)
    return levels


async def level(session: AsyncSession, who: Standing, workspace_id: str) -> Access:
    if who.implied == Access.ADMIN:
        return Access.ADMIN
    granted = (await workspace_levels(session, who, [workspace_id])).get(workspace_id, Access.NONE)
    return max(who.implied, granted)
