"""Every permission check of the web UI, in one place.

The UI follows the API's rules by calling the same helpers (`outpost.server.auth`) and store functions:
members of an organization see it and work with its workspaces and runs; the owners team manages agent
pools and their tokens. Another organization's resources are "not found", never "forbidden".
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from outpost.errors import Forbidden, NotFound
from outpost.server.auth import member, owner
from outpost.store import pools
from outpost.store import runs as runs_store
from outpost.store import workspaces as ws_store
from outpost.store.tables import AgentPool, Run, Workspace
from outpost.store.users import Principal


async def organization(session: AsyncSession, who: Principal, org: str) -> None:
    await member(session, who, org)


async def manages_pools(session: AsyncSession, who: Principal, org: str) -> bool:
    try:
        await owner(session, who, org)
    except Forbidden:
        return False
    return True


async def manage_pools(session: AsyncSession, who: Principal, org: str) -> None:
    await owner(session, who, org)


async def pool(session: AsyncSession, who: Principal, org: str, pool_id: str, *, manage: bool = False) -> AgentPool:
    await (owner if manage else member)(session, who, org)
    return await pools.get_pool(session, pool_id, {org})


async def workspace(session: AsyncSession, who: Principal, org: str, name: str, *, lock: bool = False) -> Workspace:
    await member(session, who, org)
    found = await ws_store.get_by_name(session, org, name)
    if lock:
        found = await ws_store.get(session, found.id, lock=True)
    return found


async def run(session: AsyncSession, workspace: Workspace, run_id: str, *, lock: bool = False) -> Run:
    found = await runs_store.get(session, run_id, lock=lock)
    if found.workspace_id != workspace.id:
        raise NotFound(f"Run {run_id!r} was not found in workspace {workspace.name}.")
    return found
