"""Who may do what: Terraform Cloud's access model as tables.

Three scopes. A *user* action needs only a valid user API token (creating an organization, one's own
tokens). An *organization* action needs membership and, for some, an organization right, which teams
grant (the owners team holds every right). A *workspace* action needs an access level on that workspace
(read < plan < write < admin), which comes from team access (`team-workspaces`) or from an organization
right (owners and `manage-workspaces` are admin everywhere, `read-workspaces` reads everywhere).

A caller who is not a member of the organization, or has no access at all to a workspace, is told the
resource does not exist (404): other organizations' resources are invisible. A caller who can see the
resource but lacks the level or right gets 403, with what is needed.

Every `/api/v2` endpoint declares one action from `Action`; the JSON `permissions` objects of
workspaces, runs and organizations are computed from the same tables, so they always tell the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Access(IntEnum):
    """A team's access to a workspace (Terraform Cloud's fixed levels), ordered."""

    NONE = 0
    READ = 1
    PLAN = 2
    WRITE = 3
    ADMIN = 4

    @classmethod
    def parse(cls, value: object) -> Access:
        names = {a.name.lower(): a for a in cls if a is not cls.NONE}
        if not isinstance(value, str) or value not in names:
            raise ValueError(f"access must be one of {', '.join(names)}")
        return names[value]

    @property
    def label(self) -> str:
        return self.name.lower()


class OrgRight(StrEnum):
    """Organization-level rights. Every member holds MEMBER; teams grant the others."""

    MEMBER = "member"
    READ_WORKSPACES = "read-workspaces"
    MANAGE_WORKSPACES = "manage-workspaces"
    MANAGE_MEMBERSHIP = "manage-membership"
    OWNER = "owner"


# The `organization-access` flags a team may carry (Terraform Cloud's names), and the right each grants.
TEAM_ORG_ACCESS: dict[str, OrgRight] = {
    "read-workspaces": OrgRight.READ_WORKSPACES,
    "manage-workspaces": OrgRight.MANAGE_WORKSPACES,
    "manage-membership": OrgRight.MANAGE_MEMBERSHIP,
}

# What an organization right implies on every workspace of the organization.
RIGHT_WORKSPACE_ACCESS: dict[OrgRight, Access] = {
    OrgRight.OWNER: Access.ADMIN,
    OrgRight.MANAGE_WORKSPACES: Access.ADMIN,
    OrgRight.READ_WORKSPACES: Access.READ,
}


class Scope(StrEnum):
    USER = "user"
    ORGANIZATION = "organization"
    WORKSPACE = "workspace"


class Action(StrEnum):
    # user
    READ_ACCOUNT = "read-account"
    MANAGE_OWN_TOKENS = "manage-own-tokens"
    CREATE_ORGANIZATION = "create-organization"
    # organization
    READ_ORGANIZATION = "read-organization"
    DELETE_ORGANIZATION = "delete-organization"
    LIST_WORKSPACES = "list-workspaces"
    CREATE_WORKSPACE = "create-workspace"
    READ_RUN_QUEUE = "read-run-queue"
    READ_AGENT_POOLS = "read-agent-pools"
    MANAGE_AGENT_POOLS = "manage-agent-pools"
    MANAGE_AGENT_TOKENS = "manage-agent-tokens"
    MANAGE_AGENTS = "manage-agents"
    READ_TEAMS = "read-teams"
    MANAGE_TEAMS = "manage-teams"
    READ_MEMBERSHIPS = "read-memberships"
    MANAGE_MEMBERSHIPS = "manage-memberships"
    MANAGE_OWNERS = "manage-owners"
    # workspace
    READ_WORKSPACE = "read-workspace"
    UPDATE_WORKSPACE = "update-workspace"
    CHANGE_EXECUTION_MODE = "change-execution-mode"
    DELETE_WORKSPACE = "delete-workspace"
    LOCK_WORKSPACE = "lock-workspace"
    FORCE_UNLOCK_WORKSPACE = "force-unlock-workspace"
    READ_VARIABLES = "read-variables"
    WRITE_VARIABLES = "write-variables"
    READ_CONFIGURATIONS = "read-configurations"
    READ_RUNS = "read-runs"
    READ_PLAN_JSON = "read-plan-json"
    QUEUE_RUN = "queue-run"
    APPLY_RUN = "apply-run"
    QUEUE_DESTROY = "queue-destroy"
    DISCARD_RUN = "discard-run"
    CANCEL_RUN = "cancel-run"
    FORCE_CANCEL_RUN = "force-cancel-run"
    READ_STATE = "read-state"
    READ_STATE_OUTPUTS = "read-state-outputs"
    CREATE_STATE = "create-state"
    MANAGE_TEAM_ACCESS = "manage-team-access"


@dataclass(frozen=True)
class Rule:
    scope: Scope
    right: OrgRight | None = None  # organization scope
    level: Access | None = None  # workspace scope

    def __str__(self) -> str:
        if self.scope == Scope.WORKSPACE:
            return f"{self.level.label if self.level else '?'} access to the workspace"
        if self.scope == Scope.ORGANIZATION:
            return "membership in the owners team" if self.right == OrgRight.OWNER else f"the {self.right} right"
        return "a user API token"


def _user() -> Rule:
    return Rule(Scope.USER)


def _org(right: OrgRight) -> Rule:
    return Rule(Scope.ORGANIZATION, right=right)


def _ws(level: Access) -> Rule:
    return Rule(Scope.WORKSPACE, level=level)


A, R = Access, OrgRight

RULES: dict[Action, Rule] = {
    Action.READ_ACCOUNT: _user(),
    Action.MANAGE_OWN_TOKENS: _user(),
    Action.CREATE_ORGANIZATION: _user(),
    Action.READ_ORGANIZATION: _org(R.MEMBER),
    Action.DELETE_ORGANIZATION: _org(R.OWNER),
    # Members list workspaces, but only see those they have some access to.
    Action.LIST_WORKSPACES: _org(R.MEMBER),
    Action.CREATE_WORKSPACE: _org(R.MANAGE_WORKSPACES),
    Action.READ_RUN_QUEUE: _org(R.MEMBER),
    Action.READ_AGENT_POOLS: _org(R.MEMBER),
    Action.MANAGE_AGENT_POOLS: _org(R.OWNER),
    Action.MANAGE_AGENT_TOKENS: _org(R.OWNER),
    Action.MANAGE_AGENTS: _org(R.OWNER),
    Action.READ_TEAMS: _org(R.MEMBER),
    # Creating teams and setting their organization access would let a team grant itself rights.
    Action.MANAGE_TEAMS: _org(R.OWNER),
    Action.READ_MEMBERSHIPS: _org(R.MEMBER),
    Action.MANAGE_MEMBERSHIPS: _org(R.MANAGE_MEMBERSHIP),
    Action.MANAGE_OWNERS: _org(R.OWNER),
    Action.READ_WORKSPACE: _ws(A.READ),
    Action.READ_VARIABLES: _ws(A.READ),
    Action.READ_CONFIGURATIONS: _ws(A.READ),
    Action.READ_RUNS: _ws(A.READ),
    Action.READ_STATE: _ws(A.READ),
    Action.READ_STATE_OUTPUTS: _ws(A.READ),
    Action.QUEUE_RUN: _ws(A.PLAN),
    Action.APPLY_RUN: _ws(A.WRITE),
    Action.QUEUE_DESTROY: _ws(A.WRITE),
    Action.DISCARD_RUN: _ws(A.WRITE),
    Action.CANCEL_RUN: _ws(A.WRITE),
    Action.LOCK_WORKSPACE: _ws(A.WRITE),
    Action.WRITE_VARIABLES: _ws(A.WRITE),
    Action.CREATE_STATE: _ws(A.WRITE),
    Action.UPDATE_WORKSPACE: _ws(A.ADMIN),
    # Separate from UPDATE_WORKSPACE on purpose: execution mode and pool decide where code runs.
    Action.CHANGE_EXECUTION_MODE: _ws(A.ADMIN),
    Action.DELETE_WORKSPACE: _ws(A.ADMIN),
    Action.FORCE_UNLOCK_WORKSPACE: _ws(A.ADMIN),
    Action.FORCE_CANCEL_RUN: _ws(A.ADMIN),
    # Terraform 1.0's plan JSON holds every input variable's value, sensitive ones included.
    Action.READ_PLAN_JSON: _ws(A.ADMIN),
    Action.MANAGE_TEAM_ACCESS: _ws(A.ADMIN),
}


def rule(action: Action) -> Rule:
    return RULES[action]


def workspace_allows(level: Access, action: Action) -> bool:
    r = RULES[action]
    assert r.scope == Scope.WORKSPACE and r.level is not None, action
    return level >= r.level


def organization_allows(rights: frozenset[OrgRight], action: Action) -> bool:
    r = RULES[action]
    if r.scope == Scope.USER:
        return True
    if r.scope == Scope.WORKSPACE:
        raise ValueError(f"{action} is a workspace action")
    return r.right in rights or OrgRight.OWNER in rights


def rights_of(*, owner: bool, team_flags: list[dict[str, bool]]) -> frozenset[OrgRight]:
    """A member's organization rights from the teams they are in."""
    rights = {OrgRight.MEMBER}
    if owner:
        rights |= set(OrgRight)
    for flags in team_flags:
        rights |= {right for name, right in TEAM_ORG_ACCESS.items() if flags.get(name)}
    return frozenset(rights)


def implied_access(rights: frozenset[OrgRight]) -> Access:
    return max((RIGHT_WORKSPACE_ACCESS.get(r, Access.NONE) for r in rights), default=Access.NONE)


# --- the `permissions` objects of the JSON shapes --------------------------------------------------

WORKSPACE_PERMISSIONS: dict[str, Action] = {
    "can-update": Action.UPDATE_WORKSPACE,
    "can-destroy": Action.DELETE_WORKSPACE,
    "can-queue-run": Action.QUEUE_RUN,
    "can-queue-apply": Action.APPLY_RUN,
    "can-queue-destroy": Action.QUEUE_DESTROY,
    "can-lock": Action.LOCK_WORKSPACE,
    "can-unlock": Action.LOCK_WORKSPACE,
    "can-force-unlock": Action.FORCE_UNLOCK_WORKSPACE,
    "can-read-settings": Action.READ_WORKSPACE,
    "can-read-variable": Action.READ_VARIABLES,
    "can-update-variable": Action.WRITE_VARIABLES,
    "can-read-run": Action.READ_RUNS,
    "can-read-state-versions": Action.READ_STATE,
    "can-read-state-outputs": Action.READ_STATE_OUTPUTS,
    "can-create-state-versions": Action.CREATE_STATE,
    "can-change-execution-mode": Action.CHANGE_EXECUTION_MODE,
    "can-manage-team-access": Action.MANAGE_TEAM_ACCESS,
}

RUN_PERMISSIONS: dict[str, Action] = {
    "can-apply": Action.APPLY_RUN,
    "can-cancel": Action.CANCEL_RUN,
    "can-discard": Action.DISCARD_RUN,
    "can-force-cancel": Action.FORCE_CANCEL_RUN,
    "can-force-execute": Action.APPLY_RUN,
}

ORGANIZATION_PERMISSIONS: dict[str, Action] = {
    "can-update": Action.DELETE_ORGANIZATION,
    "can-destroy": Action.DELETE_ORGANIZATION,
    "can-create-workspace": Action.CREATE_WORKSPACE,
    "can-create-team": Action.MANAGE_TEAMS,
    "can-manage-users": Action.MANAGE_MEMBERSHIPS,
    "can-update-agent-pools": Action.MANAGE_AGENT_POOLS,
}


def workspace_permissions(level: Access) -> dict[str, bool]:
    return {key: workspace_allows(level, action) for key, action in WORKSPACE_PERMISSIONS.items()}


def run_permissions(level: Access) -> dict[str, bool]:
    return {key: workspace_allows(level, action) for key, action in RUN_PERMISSIONS.items()}


def organization_permissions(rights: frozenset[OrgRight]) -> dict[str, bool]:
    perms = {key: organization_allows(rights, action) for key, action in ORGANIZATION_PERMISSIONS.items()}
    perms["can-access-via-teams"] = True
    return perms
