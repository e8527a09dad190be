"""Workspaces, their settings, locks and variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.workspaces import (
    DEFAULT_TERRAFORM_VERSION,
    ExecutionMode,
    check_mode_and_version,
    check_terraform_version,
    check_workspace_name,
)
from outpost.errors import Conflict, NotFound, Unprocessable
from outpost.ids import new_id
from outpost.store.tables import AgentPool, PoolAllowedWorkspace, Variable, Workspace
from outpost.timeutil import utcnow

_UNSET: Any = object()
UNSET: Any = _UNSET  # for callers: "leave this field as it is"


@dataclass
class WorkspaceSettings:
    """Fields a create or update may set; `_UNSET` leaves a field as it is."""

    name: Any = _UNSET
    execution_mode: Any = _UNSET
    agent_pool_id: Any = _UNSET
    terraform_version: Any = _UNSET
    auto_apply: Any = _UNSET
    description: Any = _UNSET
    working_directory: Any = _UNSET
    source: Any = _UNSET


def _mode(value: object) -> ExecutionMode:
    try:
        return ExecutionMode(str(value))
    except ValueError:
        raise Unprocessable(
            f"execution-mode {value!r} is not one of remote, local, agent.", title="invalid execution mode"
        ) from None


async def _check_pool(session: AsyncSession, workspace: Workspace, pool_id: str) -> None:
    pool = await session.get(AgentPool, pool_id)
    if pool is None or pool.is_builtin or pool.organization_id != workspace.organization_id:
        raise Unprocessable(
            f"Agent pool {pool_id!r} does not exist in {workspace.organization_id}.",
            title="invalid agent pool",
        )
    if not pool.organization_scoped:
        allowed = await session.get(PoolAllowedWorkspace, (pool.id, workspace.id))
        if allowed is None:
            raise Unprocessable(
                f"Agent pool {pool.name!r} is not organization-scoped and does not list workspace "
                f"{workspace.name!r} among its allowed workspaces.",
                title="agent pool not allowed",
            )


async def apply_settings(session: AsyncSession, workspace: Workspace, settings: WorkspaceSettings) -> None:
    if settings.name is not _UNSET and settings.name != workspace.name:
        name = check_workspace_name(settings.name)
        taken = await session.execute(
            select(Workspace.id).where(Workspace.organization_id == workspace.organization_id, Workspace.name == name)
        )
        if taken.first():
            raise Conflict(f"A workspace named {name!r} already exists.", title="name taken")
        workspace.name = name
    mode = ExecutionMode(workspace.execution_mode)
    if settings.execution_mode is not _UNSET and settings.execution_mode is not None:
        mode = _mode(settings.execution_mode)
    version = workspace.terraform_version
    if settings.terraform_version is not _UNSET and settings.terraform_version is not None:
        version = check_terraform_version(settings.terraform_version)
    pool_id = workspace.agent_pool_id
    if settings.agent_pool_id is not _UNSET:
        pool_id = settings.agent_pool_id or None
    if mode != ExecutionMode.AGENT:
        pool_id = None
    elif pool_id is None:
        raise Unprocessable("execution-mode agent needs an agent pool: set agent-pool-id.", title="agent pool required")
    check_mode_and_version(mode, version)
    if pool_id is not None and pool_id != workspace.agent_pool_id:
        await _check_pool(session, workspace, pool_id)
    workspace.execution_mode = mode.value
    workspace.terraform_version = version
    workspace.agent_pool_id = pool_id
    if settings.auto_apply is not _UNSET and settings.auto_apply is not None:
        if not isinstance(settings.auto_apply, bool):
            raise Unprocessable("auto-apply must be true or false.")
        workspace.auto_apply = settings.auto_apply
    if settings.description is not _UNSET:
        workspace.description = settings.description
    if settings.working_directory is not _UNSET:
        workspace.working_directory = settings.working_directory or None
    if settings.source is not _UNSET and settings.source in ("tfe-api", "tfe-module", "tfe-ui", "terraform"):
        workspace.source = settings.source
    workspace.updated_at = utcnow()
    await session.flush()


async def create(session: AsyncSession, org_id: str, settings: WorkspaceSettings) -> Workspace:
    name = check_workspace_name(settings.name)
    taken = await session.execute(
        select(Workspace.id).where(Workspace.organization_id == org_id, Workspace.name == name)
    )
    if taken.first():
        raise Conflict(f"A workspace named {name!r} already exists in {org_id}.", title="name taken")
    now = utcnow()
    workspace = Workspace(
        id=new_id("ws"),
        organization_id=org_id,
        name=name,
        execution_mode=ExecutionMode.REMOTE.value,
        terraform_version=DEFAULT_TERRAFORM_VERSION,
        auto_apply=False,
        source="tfe-api",
        locked=False,
        created_at=now,
        updated_at=now,
    )
    session.add(workspace)
    await session.flush()
    await apply_settings(session, workspace, settings)
    return workspace


async def get(session: AsyncSession, workspace_id: str, *, lock: bool = False) -> Workspace:
    query = select(Workspace).where(Workspace.id == workspace_id)
    if lock:
        query = query.with_for_update()
    workspace = (await session.execute(query)).scalar_one_or_none()
    if workspace is None:
        raise NotFound(f"Workspace {workspace_id!r} was not found.")
    return workspace


async def get_by_name(session: AsyncSession, org_id: str, name: str) -> Workspace:
    workspace = (
        await session.execute(select(Workspace).where(Workspace.organization_id == org_id, Workspace.name == name))
    ).scalar_one_or_none()
    if workspace is None:
        raise NotFound(f"Workspace {name!r} was not found in {org_id}.")
    return workspace


async def list_for(
    session: AsyncSession, org_id: str, *, search: str | None, offset: int, limit: int
) -> tuple[list[Workspace], int]:
    query = select(Workspace).where(Workspace.organization_id == org_id)
    if search:
        query = query.where(Workspace.name.contains(search, autoescape=True))
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await session.execute(query.order_by(Workspace.name).offset(offset).limit(limit))).scalars()
    return list(rows), total


async def lock(session: AsyncSession, workspace: Workspace, user_id: str, reason: str) -> None:
    if workspace.locked or workspace.current_run_id is not None:
        holder = "a user" if workspace.locked else f"run {workspace.current_run_id}"
        raise Conflict(f"Workspace {workspace.name} is already locked by {holder}.", title="workspace already locked")
    workspace.locked = True
    workspace.locked_by_user_id = user_id
    workspace.lock_reason = reason
    await session.flush()


async def unlock(session: AsyncSession, workspace: Workspace, user_id: str, *, force: bool) -> None:
    if not workspace.locked:
        raise Conflict(f"Workspace {workspace.name} is not locked.", title="workspace not locked")
    if not force and workspace.locked_by_user_id not in (None, user_id):
        raise Conflict(
            f"Workspace {workspace.name} is locked by another user; use force-unlock.",
            title="locked by another user",
        )
    workspace.locked = False
    workspace.locked_by_user_id = None
    workspace.lock_reason = None
    await session.flush()


# --- variables ----------------------------------------------------------------------------------

CATEGORIES = ("terraform", "env")


async def list_variables(session: AsyncSession, workspace_id: str) -> list[Variable]:
    return list(
        (
            await session.execute(
                select(Variable).where(Variable.workspace_id == workspace_id).order_by(Variable.category, Variable.key)
            )
        ).scalars()
    )


def _check_variable(key: object, category: object) -> tuple[str, str]:
    if not isinstance(key, str) or not key or len(key) > 255:
        raise Unprocessable("A variable needs a key of 1 to 255 characters.", title="invalid variable")
    if category not in CATEGORIES:
        raise Unprocessable(f"category {category!r} is not terraform or env.", title="invalid variable")
    assert isinstance(category, str)
    return key, category


async def create_variable(
    session: AsyncSession,
    workspace: Workspace,
    *,
    key: object,
    value: object,
    category: object,
    hcl: bool,
    sensitive: bool,
    description: str | None,
) -> Variable:
    key, category = _check_variable(key, category)
    if value is not None and not isinstance(value, str):
        raise Unprocessable("A variable's value is a string.", title="invalid variable")
    exists = await session.execute(
        select(Variable.id).where(
            Variable.workspace_id == workspace.id, Variable.key == key, Variable.category == category
        )
    )
    if exists.first():
        raise Conflict(f"A {category} variable {key!r} already exists.", title="variable exists")
    variable = Variable(
        id=new_id("var"),
        workspace_id=workspace.id,
        key=key,
        value=value or "",
        category=category,
        hcl=hcl,
        sensitive=sensitive,
        description=description,
        created_at=utcnow(),
    )
    session.add(variable)
    await session.flush()
    return variable


async def get_variable(session: AsyncSession, workspace_id: str, var_id: str) -> Variable:
    variable = await session.get(Variable, var_id)
    if variable is None or variable.workspace_id != workspace_id:
        raise NotFound(f"Variable {var_id!r} was not found.")
    return variable


async def update_variable(
    session: AsyncSession,
    variable: Variable,
    *,
    key: str | None = None,
    value: str | None = None,
    hcl: bool | None = None,
    description: str | None = _UNSET,
    sensitive: bool | None = None,
) -> None:
    """Change what is given (None leaves a field as it is); sensitive is one-way, as in Terraform Cloud."""
    if key is not None:
        variable.key, _ = _check_variable(key, variable.category)
    if value is not None:
        variable.value = value
    if hcl is not None:
        variable.hcl = hcl
    if description is not _UNSET:
        variable.description = description
    if sensitive:
        variable.sensitive = True
    await session.flush()
