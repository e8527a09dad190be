"""Who is asking, and may they: user API tokens for the public API (agents' credentials never pass here).

Every `/api/v2` endpoint takes a `Caller` through `guard(Action.X)`: the dependency authenticates the user
token and carries the endpoint's action; the handler then loads its resource through the caller
(`caller.workspace(...)`, `caller.run(...)`, `caller.organization(...)`), which checks the action against
`outpost.domain.permissions` with the facts from `outpost.store.access`. A test enumerates the routes and
fails for one that has no guard.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import (
    Access,
    Action,
    Scope,
    organization_allows,
    organization_permissions,
    rule,
    run_permissions,
    workspace_allows,
    workspace_permissions,
)
from outpost.errors import Forbidden, NotFound, Unauthorized
from outpost.ids import TokenKind, secret_kind
from outpost.server.context import Outpost, outpost
from outpost.store import access, users
from outpost.store import runs as runs_store
from outpost.store import workspaces as ws_store
from outpost.store.access import Standing
from outpost.store.tables import Run, Workspace
from outpost.store.users import Membership, Principal
from outpost.timeutil import utcnow

_TOUCH_EVERY = timedelta(minutes=1)
_last_touch: dict[str, float] = {}


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def principal(request: Request, app: Outpost = Depends(outpost)) -> Principal:
    token = bearer(request)
    if token is None:
        raise Unauthorized("Send an API token as 'Authorization: Bearer <token>'.")
    if secret_kind(token) != TokenKind.USER:
        raise Unauthorized("This endpoint takes a user API token; agent credentials only reach the agent protocol.")
    async with app.db.read() as session:
        who = await users.authenticate(session, token)
    now = utcnow().timestamp()
    if now - _last_touch.get(who.token_id, 0.0) > _TOUCH_EVERY.total_seconds():
        _last_touch[who.token_id] = now
        async with app.db.write() as session:
            await users.touch_user_token(session, who.token_id)
    return who


class Caller:
    """The authenticated user, the endpoint's action, and the checks that load resources for it."""

    def __init__(self, who: Principal, action: Action) -> None:
        self.who = who
        self.action = action
        self._standings: dict[str, Standing | None] = {}
        self._levels: dict[str, Access] = {}

    @property
    def user_id(self) -> str:
        return self.who.user_id

    async def standing(self, session: AsyncSession, org_id: str) -> Standing | None:
        if org_id not in self._standings:
            self._standings[org_id] = await access.standing(session, self.who.user_id, org_id)
        return self._standings[org_id]

    # --- organization scope ---------------------------------------------------------------------

    async def organization(self, session: AsyncSession, org_id: str, action: Action | None = None) -> Standing:
        """The caller's standing, if a member allowed `action`: 404 for non-members, 403 without the right."""
        action = action or self.action
        found = await self.standing(session, org_id)
        if found is None:
            raise NotFound(f"Organization {org_id!r} was not found.")
        if rule(action).scope == Scope.ORGANIZATION and not organization_allows(found.rights, action):
            raise Forbidden(f"This needs {rule(action)} of organization {org_id}.", title="not allowed")
        return found

    async def org_permissions(self, session: AsyncSession, org_id: str) -> dict[str, bool]:
        found = await self.standing(session, org_id)
        return organization_permissions(found.rights) if found else {}

    # --- workspace scope ------------------------------------------------------------------------

    async def level(self, session: AsyncSession, workspace: Workspace) -> Access:
        if workspace.id not in self._levels:
            found = await self.standing(session, workspace.organization_id)
            self._levels[workspace.id] = (
                Access.NONE if found is None else await access.level(session, found, workspace.id)
            )
        return self._levels[workspace.id]

    async def levels(self, session: AsyncSession, workspaces: list[Workspace]) -> dict[str, Access]:
        """Levels for many workspaces at once (lists), cached for the shapes' permissions."""
        by_org: dict[str, list[Workspace]] = {}
        for ws in workspaces:
            if ws.id not in self._levels:
                by_org.setdefault(ws.organization_id, []).append(ws)
        for org_id, group in by_org.items():
            found = await self.standing(session, org_id)
            granted = {} if found is None else await access.workspace_levels(session, found, [w.id for w in group])
            for ws in group:
                implied = Access.NONE if found is None else found.implied
                self._levels[ws.id] = max(implied, granted.get(ws.id, Access.NONE))
        return {ws.id: self._levels[ws.id] for ws in workspaces}

    async def readable_workspaces(self, session: AsyncSession, org_id: str) -> set[str] | None:
        """None when the caller reads every workspace of the organization; else the ids their teams reach."""
        found = await self.standing(session, org_id)
        if found is None:
            return set()
        if found.implied >= Access.READ:
            return None
        return set((await access.workspace_levels(session, found)).keys())

    async def allows(self, session: AsyncSession, workspace: Workspace, action: Action) -> bool:
        return workspace_allows(await self.level(session, workspace), action)

    async def check(
        self, session: AsyncSession, workspace: Workspace, action: Action | None = None, *, noun: str = ""
    ) -> Access:
        """404 when the caller has no access to the workspace at all, 403 when not enough for `action`."""
        action = action or self.action
        level = await self.level(session, workspace)
        if level == Access.NONE:
            raise NotFound(f"{noun or f'Workspace {workspace.id!r}'} was not found.")
        if not workspace_allows(level, action):
            raise Forbidden(
                f"This ({action}) needs {rule(action)} {workspace.name}; you have {level.label} access.",
                title="not allowed",
            )
        return level

    async def workspace(
        self, session: AsyncSession, workspace_id: str, *, lock: bool = False, action: Action | None = None
    ) -> Workspace:
        workspace = await ws_store.get(session, workspace_id, lock=lock)
        await self.check(session, workspace, action)
        return workspace

    async def workspace_by_name(
        self, session: AsyncSession, org_id: str, name: str, *, action: Action | None = None
    ) -> Workspace:
        if await self.standing(session, org_id) is None:
            raise NotFound(f"Organization {org_id!r} was not found.")
        workspace = await ws_store.get_by_name(session, org_id, name)
        await self.check(session, workspace, action, noun=f"Workspace {name!r}")
        return workspace

    async def run(self, session: AsyncSession, run_id: str, *, lock: bool = False, action: Action | None = None) -> Run:
        run = await runs_store.get(session, run_id, lock=lock)
        workspace = await ws_store.get(session, run.workspace_id)
        await self.check(session, workspace, action, noun=f"Run {run_id!r}")
        return run

    async def workspace_of(self, session: AsyncSession, workspace_id: str, noun: str) -> Workspace:
        """The workspace behind another resource, checked, with the resource named in a 404."""
        workspace = await ws_store.get(session, workspace_id)
        await self.check(session, workspace, noun=noun)
        return workspace

    async def workspace_shape_permissions(self, session: AsyncSession, workspace: Workspace) -> dict[str, bool]:
        return workspace_permissions(await self.level(session, workspace))

    async def run_shape_permissions(self, session: AsyncSession, workspace: Workspace) -> dict[str, bool]:
        return run_permissions(await self.level(session, workspace))


class Guard:
    """The dependency every `/api/v2` endpoint declares: it authenticates, and names the endpoint's action."""

    def __init__(self, action: Action) -> None:
        self.action = action

    async def __call__(self, request: Request, app: Outpost = Depends(outpost)) -> Caller:
        return Caller(await principal(request, app), self.action)

    def __repr__(self) -> str:
        return f"Guard({self.action})"


def guard(action: Action) -> Any:
    return Depends(Guard(action))


# --- older helpers, kept for callers outside the API (the web UI) -----------------------------------


async def member(session: AsyncSession, who: Principal, org_id: str) -> Membership:
    return await users.membership(session, who.user_id, org_id)


async def owner(session: AsyncSession, who: Principal, org_id: str) -> Membership:
    standing = await users.membership(session, who.user_id, org_id)
    if not standing.is_owner:
        raise Forbidden("Only members of the owners team can do this.")
    return standing
