"""Workspaces, their settings, locks and variables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.jobs import JobStatus
from outpost.domain.workspaces import (
    DEFAULT_TERRAFORM_VERSION,
    ExecutionMode,
    check_mode_and_version,
    check_terraform_version,
    check_workspace_name,
)
from outpost.encryption import Encryptor
from outpost.errors import Conflict, NotFound, Unprocessable
from outpost.ids import new_id
from outpost.store import events
from outpost.store.pools import BUILTIN_POOL_ID, ensure_builtin_pool
from outpost.store.tables import AgentPool, Job, PoolAllowedWorkspace, Run, Variable, Workspace
from outpost.timeutil import utcnow

_UNSET: Any = object()
UNSET: Any = _UNSET  # "leave as it is", for callers that compare settings with a workspace


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


def changes_execution(settings: WorkspaceSettings, workspace: Workspace) -> bool:
    """Whether the settings change where the workspace's runs execute (mode or pool): admin access only."""
    mode = settings.execution_mode
    pool = settings.agent_pool_id
    return (mode is not UNSET and mode != workspace.execution_mode) or (
        pool is not UNSET and (pool or None) != workspace.agent_pool_id
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
    rerouted = mode.value != workspace.execution_mode or pool_id != workspace.agent_pool_id
    workspace.execution_mode = mode.value
    workspace.terraform_version = version
    workspace.agent_pool_id = pool_id
    if rerouted:
        await _reroute_queued_jobs(session, workspace)
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


async def _reroute_queued_jobs(session: AsyncSession, workspace: Workspace) -> None:
    """Jobs still waiting for an agent follow the workspace to its new pool: a run never reaches an agent
    outside the pool its workspace names (a job an agent already holds is not taken back)."""
    if workspace.execution_mode == ExecutionMode.LOCAL.value:
        return
    target = workspace.agent_pool_id if workspace.execution_mode == ExecutionMode.AGENT.value else BUILTIN_POOL_ID
    if target == BUILTIN_POOL_ID:
        await ensure_builtin_pool(session)
    moved: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        update(Job)
        .where(
            Job.run_id.in_(select(Run.id).where(Run.workspace_id == workspace.id)),
            Job.status == JobStatus.QUEUED.value,
            Job.pool_id != target,
        )
        .values(pool_id=target)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount:
        events.wake_pool(session, str(target), moved.rowcount)


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


_WORKSPACE = select(Workspace).where(Workspace.id == bindparam("workspace_id"))
_WORKSPACE_LOCKED = _WORKSPACE.with_for_update()


async def get(session: AsyncSession, workspace_id: str, *, lock: bool = False) -> Workspace:
    query = _WORKSPACE_LOCKED if lock else _WORKSPACE
    workspace = (await session.execute(query, {"workspace_id": workspace_id})).scalar_one_or_none()
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
    session: AsyncSession,
    org_id: str,
    *,
    search: str | None,
    offset: int,
    limit: int,
    only: set[str] | None = None,
) -> tuple[list[Workspace], int]:
    """`only`, when given, restricts the list to those workspace ids (what a member may see)."""
    query = select(Workspace).where(Workspace.organization_id == org_id)
    if only is not None:
        query = query.where(Workspace.id.in_(sorted(only)))
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
MAX_VALUE = 256 * 1024


async def list_variables(session: AsyncSession, workspace_id: str) -> list[Variable]:
    return list(
        (
            await session.execute(
                select(Variable).where(Variable.workspace_id == workspace_id).order_by(Variable.category, Variable.key)
            )
        ).scalars()
    )


# A key ends up in a tfvars file or an environment: only names that are names there.
_KEY_PATTERNS = {
    "terraform": re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$"),
    "env": re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"),
}


def _check_variable(key: object, category: object) -> tuple[str, str]:
    if category not in CATEGORIES:
        raise Unprocessable(f"category {str(category)[:50]!r} is not terraform or env.", title="invalid variable")
    assert isinstance(category, str)
    if not isinstance(key, str) or not _KEY_PATTERNS[category].match(key):
        raise Unprocessable(
            f"A {category} variable needs a key of 1 to 255 letters, digits and '_'"
            + (" or '-'" if category == "terraform" else "")
            + ", not starting with a digit.",
            title="invalid variable",
        )
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
    box: Encryptor,
) -> Variable:
    key, category = _check_variable(key, category)
    if value is not None and not isinstance(value, str):
        raise Unprocessable("A variable's value is a string.", title="invalid variable")
    if description is not None and len(description) > 10_000:
        raise Unprocessable("A variable's description is at most 10000 characters.", title="invalid variable")
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
        value="",
        category=category,
        hcl=hcl,
        sensitive=False,
        description=description,
        created_at=utcnow(),
    )
    set_value(variable, value or "", sensitive=sensitive, box=box)
    session.add(variable)
    await session.flush()
    return variable


def set_value(variable: Variable, value: str, *, sensitive: bool, box: Encryptor) -> None:
    """Sensitive values are stored only encrypted; a variable once sensitive stays so (Terraform Cloud's rule)."""
    if "\x00" in value:
        raise Unprocessable("A variable's value cannot contain NUL characters.", title="invalid variable")
    if len(value) > MAX_VALUE:
        raise Unprocessable(f"A variable's value is at most {MAX_VALUE} characters.", title="invalid variable")
    variable.sensitive = variable.sensitive or sensitive
    if variable.sensitive:
        variable.value = ""
        variable.value_ciphertext = box.encrypt(value)
    else:
        variable.value = value
        variable.value_ciphertext = None


def plain_value(variable: Variable, box: Encryptor) -> str:
    """The value as terraform needs it (for the job that runs it; never for the API)."""
    if variable.value_ciphertext is not None:
        return box.decrypt(variable.value_ciphertext)
    return variable.value


async def update_variable(session: AsyncSession, variable: Variable, attrs: dict[str, Any], *, box: Encryptor) -> None:
    if "key" in attrs:
        key, _ = _check_variable(attrs["key"], variable.category)
        if key != variable.key:
            taken = await session.execute(
                select(Variable.id).where(
                    Variable.workspace_id == variable.workspace_id,
                    Variable.key == key,
                    Variable.category == variable.category,
                )
            )
            if taken.first():
                raise Conflict(f"A {variable.category} variable {key!r} already exists.", title="variable exists")
            variable.key = key
    sensitive = attrs.get("sensitive")
    if sensitive is not None and not isinstance(sensitive, bool):
        raise Unprocessable('"sensitive" must be true or false.', title="invalid attribute")
    if "value" in attrs:
        value = attrs["value"]
        if value is not None and not isinstance(value, str):
            raise Unprocessable("A variable's value is a string.", title="invalid variable")
        set_value(variable, value or "", sensitive=bool(sensitive), box=box)
    elif sensitive and not variable.sensitive:
        set_value(variable, variable.value, sensitive=True, box=box)
    if "hcl" in attrs:
        if not isinstance(attrs["hcl"], bool):
            raise Unprocessable('"hcl" must be true or false.', title="invalid attribute")
        variable.hcl = attrs["hcl"]
    if "description" in attrs:
        description = attrs["description"]
        if description is not None and (not isinstance(description, str) or len(description) > 10_000):
            raise Unprocessable('"description" must be a string of at most 10000 characters.')
        variable.description = description
    await session.flush()


async def get_variable(session: AsyncSession, workspace_id: str, var_id: str) -> Variable:
    variable = await session.get(Variable, var_id)
    if variable is None or variable.workspace_id != workspace_id:
        raise NotFound(f"Variable {var_id!r} was not found.")
    return variable
