"""Every permission check of the web UI, in one place, on the API's rules.

Each page and form names its action (`outpost.domain.permissions.Action`) and loads what it shows through
a `Caller` (`outpost.server.auth`), exactly as the API endpoints do: no access at all is "not found"
(another organization's resources are never "forbidden"), too little access is "forbidden". Buttons and
forms are shown only for actions the caller may take (`allowed`); the handlers check again.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Action, organization_allows
from outpost.errors import NotFound
from outpost.server.auth import Caller
from outpost.store import pools
from outpost.store import runs as runs_store
from outpost.store.tables import AgentPool, Run, Workspace
from outpost.store.users import Principal


def caller(who: Principal, action: Action) -> Caller:
    return Caller(who, action)


async def organization(
    session: AsyncSession, who: Principal, org: str, action: Action = Action.READ_ORGANIZATION
) -> None:
    await caller(who, action).organization(session, org)


async def may(session: AsyncSession, who: Principal, org: str, action: Action) -> bool:
    """An organization-level right (manage pools, create workspaces), for showing a form or not."""
    standing = await caller(who, action).standing(session, org)
    return standing is not None and organization_allows(standing.rights, action)


async def pool(
    session: AsyncSession, who: Principal, org: str, pool_id: str, action: Action = Action.READ_AGENT_POOLS
) -> AgentPool:
    await caller(who, action).organization(session, org)
    return await pools.get_pool(session, pool_id, {org})


async def workspace(
    session: AsyncSession,
    who: Principal,
    org: str,
    name: str,
    action: Action = Action.READ_WORKSPACE,
    *,
    lock: bool = False,
) -> Workspace:
    found = await caller(who, action).workspace_by_name(session, org, name)
    if lock:
        found = await caller(who, action).workspace(session, found.id, lock=True)
    return found


async def allowed(session: AsyncSession, who: Principal, workspace: Workspace, *actions: Action) -> set[Action]:
    """Which of `actions` the caller may take on the workspace."""
    check = caller(who, Action.READ_WORKSPACE)
    return {a for a in actions if await check.allows(session, workspace, a)}


async def readable_workspaces(session: AsyncSession, who: Principal, org: str) -> set[str] | None:
    """None when the caller reads every workspace of the organization, else the ids it may read."""
    return await caller(who, Action.LIST_WORKSPACES).readable_workspaces(session, org)


async def run(session: AsyncSession, workspace: Workspace, run_id: str, *, lock: bool = False) -> Run:
    found = await runs_store.get(session, run_id, lock=lock)
    if found.workspace_id != workspace.id:
        raise NotFound(f"Run {run_id!r} was not found in workspace {workspace.name}.")
    return found
