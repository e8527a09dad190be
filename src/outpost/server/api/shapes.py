"""Terraform Cloud resource shapes. Every attribute real clients need, every timestamp ending in Z."""

from __future__ import annotations

from typing import Any

from outpost.domain.permissions import (
    Access,
    OrgRight,
    organization_permissions,
    run_permissions,
    workspace_permissions,
)
from outpost.domain.runs import CANCELABLE, RunStatus
from outpost.domain.workspaces import ExecutionMode
from outpost.server.jsonapi import Resource, resource, to_many, to_one
from outpost.store.tables import (
    Agent,
    AgentPool,
    AgentToken,
    Apply,
    ConfigurationVersion,
    Organization,
    OrganizationMembership,
    Plan,
    Run,
    StateVersion,
    StateVersionOutput,
    Team,
    TeamWorkspace,
    User,
    UserToken,
    Variable,
    Workspace,
)
from outpost.timeutil import iso

ENTITLEMENTS = {
    "operations": True,
    "agents": True,
    "state-storage": True,
    "private-module-registry": False,
    "sentinel": False,
    "teams": True,
    "vcs-integrations": False,
    "sso": False,
    "audit-logging": False,
    "cost-estimation": False,
}


def organization(org: Organization, permissions: dict[str, bool] | None = None) -> Resource:
    """`permissions` are the caller's (see outpost.domain.permissions); by default a plain member's."""
    return resource(
        "organizations",
        org.id,
        {
            "name": org.id,
            "email": org.email,
            "created-at": iso(org.created_at),
            "default-execution-mode": "remote",
            "permissions": permissions or organization_permissions(frozenset({OrgRight.MEMBER})),
        },
        {"default-agent-pool": to_one("agent-pools", None)},
    )


def entitlement_set(org_id: str) -> Resource:
    return resource("entitlement-sets", f"org-{org_id}", dict(ENTITLEMENTS))


def agent_pool(pool: AgentPool, agent_count: int, workspaces: list[str], allowed: list[str]) -> Resource:
    return resource(
        "agent-pools",
        pool.id,
        {
            "name": pool.name,
            "created-at": iso(pool.created_at),
            "organization-scoped": pool.organization_scoped,
            "agent-count": agent_count,
        },
        {
            "organization": to_one("organizations", pool.organization_id),
            "agents": {"links": {"related": f"/api/v2/agent-pools/{pool.id}/agents"}},
            "authentication-tokens": {"links": {"related": f"/api/v2/agent-pools/{pool.id}/authentication-tokens"}},
            "workspaces": to_many("workspaces", workspaces),
            "allowed-workspaces": to_many("workspaces", allowed),
            "excluded-workspaces": to_many("workspaces", []),
        },
        {"self": f"/api/v2/agent-pools/{pool.id}"},
    )


def agent_token(token: AgentToken, secret: str | None = None) -> Resource:
    return resource(
        "authentication-tokens",
        token.id,
        {
            "description": token.description,
            "created-at": iso(token.created_at),
            "last-used-at": iso(token.last_used_at),
            "token": secret,
        },
        {"created-by": to_one("users", token.created_by_user_id)},
    )


def agent(a: Agent) -> Resource:
    return resource(
        "agents",
        a.id,
        {
            "name": a.name,
            "status": a.status,
            "ip-address": a.ip_address,
            "last-ping-at": iso(a.last_ping_at),
        },
        {"agent-pool": to_one("agent-pools", a.pool_id)},
        {"self": f"/api/v2/agents/{a.id}"},
    )


def workspace(ws: Workspace, *, access: Access = Access.READ) -> Resource:
    """`access` is the caller's level on the workspace: the `permissions` object tells the truth from it."""
    locked = ws.locked or ws.current_run_id is not None
    return resource(
        "workspaces",
        ws.id,
        {
            "name": ws.name,
            "description": ws.description,
            "execution-mode": ws.execution_mode,
            "operations": ws.execution_mode in (ExecutionMode.REMOTE.value, ExecutionMode.AGENT.value),
            "auto-apply": ws.auto_apply,
            "locked": locked,
            "terraform-version": ws.terraform_version,
            "working-directory": ws.working_directory,
            "vcs-repo": None,
            "created-at": iso(ws.created_at),
            "updated-at": iso(ws.updated_at),
            "trigger-prefixes": [],
            "trigger-patterns": [],
            "tag-names": [],
            "source": ws.source,
            "agent-pool-id": ws.agent_pool_id,
            "environment": "default",
            "file-triggers-enabled": False,
            "queue-all-runs": False,
            "speculative-enabled": True,
            "structured-run-output-enabled": False,
            "global-remote-state": False,
            "resource-count": 0,
            "permissions": workspace_permissions(access),
            "actions": {"is-destroyable": True},
        },
        {
            "organization": to_one("organizations", ws.organization_id),
            "agent-pool": to_one("agent-pools", ws.agent_pool_id),
            "current-run": to_one("runs", ws.current_run_id or ws.latest_run_id),
            "latest-run": to_one("runs", ws.latest_run_id),
            "current-state-version": to_one("state-versions", ws.current_state_version_id),
            "locked-by": to_one("users", ws.locked_by_user_id)
            if ws.locked_by_user_id
            else to_one("runs", ws.current_run_id),
        },
        {"self": f"/api/v2/organizations/{ws.organization_id}/workspaces/{ws.name}"},
    )


def configuration_version(cv: ConfigurationVersion, upload_url: str | None) -> Resource:
    stamps = {k: v for k, v in (cv.status_timestamps or {}).items() if isinstance(v, str)}
    return resource(
        "configuration-versions",
        cv.id,
        {
            "status": cv.status,
            "source": cv.source,
            "auto-queue-runs": cv.auto_queue_runs,
            "speculative": cv.speculative,
            "provisional": False,
            "upload-url": upload_url if cv.status == "pending" else None,
            "error": None if cv.error_message is None else "error",
            "error-message": cv.error_message,
            "status-timestamps": stamps,
        },
        {"ingress-attributes": to_one("ingress-attributes", None)},
    )


def run(
    r: Run,
    plan: Plan,
    apply: Apply,
    *,
    force_cancel_available_at: str | None = None,
    position: int = 0,
    access: Access = Access.READ,
) -> Resource:
    status = RunStatus(r.status)
    executing = status in (RunStatus.PLANNING, RunStatus.APPLYING)
    return resource(
        "runs",
        r.id,
        {
            "status": r.status,
            "source": r.source,
            "message": r.message,
            "has-changes": r.has_changes,
            "is-destroy": r.is_destroy,
            "refresh": r.refresh,
            "refresh-only": r.refresh_only,
            "auto-apply": r.auto_apply,
            "plan-only": r.plan_only,
            "allow-empty-apply": False,
            "target-addrs": r.target_addrs or None,
            "replace-addrs": r.replace_addrs or None,
            "created-at": iso(r.created_at),
            "status-timestamps": r.status_timestamps or {},
            "position-in-queue": position,
            "force-cancel-available-at": force_cancel_available_at,
            "error-message": r.error_message,
            "actions": {
                "is-cancelable": status in CANCELABLE,
                "is-confirmable": status == RunStatus.PLANNED,
                "is-discardable": status in (RunStatus.PENDING, RunStatus.PLANNED),
                "is-force-cancelable": force_cancel_available_at is not None and executing,
            },
            "permissions": run_permissions(access),
        },
        {
            "workspace": to_one("workspaces", r.workspace_id),
            "configuration-version": to_one("configuration-versions", r.configuration_version_id),
            "plan": to_one("plans", plan.id),
            "apply": to_one("applies", apply.id),
            "created-by": to_one("users", r.created_by_user_id),
            "cost-estimate": to_one("cost-estimates", None),
            "policy-checks": to_many("policy-checks", []),
            "run-events": to_many("run-events", []),
        },
        {"self": f"/api/v2/runs/{r.id}"},
    )


def _phase_attributes(phase: Plan | Apply, log_read_url: str) -> dict[str, Any]:
    return {
        "status": phase.status,
        "status-timestamps": phase.status_timestamps or {},
        "resource-additions": phase.resource_additions,
        "resource-changes": phase.resource_changes,
        "resource-destructions": phase.resource_destructions,
        "log-read-url": log_read_url,
    }


def plan(p: Plan, log_read_url: str) -> Resource:
    attrs = _phase_attributes(p, log_read_url)
    attrs["has-changes"] = p.has_changes
    return resource(
        "plans",
        p.id,
        attrs,
        {"exports": to_many("plan-exports", [])},
        {"self": f"/api/v2/plans/{p.id}", "json-output": f"/api/v2/plans/{p.id}/json-output"},
    )


def apply(a: Apply, log_read_url: str) -> Resource:
    return resource(
        "applies",
        a.id,
        _phase_attributes(a, log_read_url),
        {"state-versions": to_many("state-versions", [a.state_version_id] if a.state_version_id else [])},
        {"self": f"/api/v2/applies/{a.id}"},
    )


def state_version(sv: StateVersion, download_url: str, output_ids: list[str]) -> Resource:
    return resource(
        "state-versions",
        sv.id,
        {
            "serial": sv.serial,
            "lineage": sv.lineage,
            "md5": sv.md5,
            "status": "finalized",
            "created-at": iso(sv.created_at),
            "size": sv.size,
            "terraform-version": sv.terraform_version,
            "hosted-state-download-url": download_url,
            "hosted-json-state-download-url": None,
            "resources-processed": True,
        },
        {
            "run": to_one("runs", sv.run_id),
            "outputs": to_many("state-version-outputs", output_ids),
        },
        {"self": f"/api/v2/state-versions/{sv.id}"},
    )


def state_version_output(o: StateVersionOutput) -> Resource:
    return resource(
        "state-version-outputs",
        o.id,
        {
            "name": o.name,
            "sensitive": o.sensitive,
            "type": o.type,
            "value": None if o.sensitive else o.value,
            "detailed-type": o.detailed_type,
        },
        None,
        {"self": f"/api/v2/state-version-outputs/{o.id}"},
    )


def variable(v: Variable) -> Resource:
    return resource(
        "vars",
        v.id,
        {
            "key": v.key,
            "value": None if v.sensitive else v.value,
            "category": v.category,
            "hcl": v.hcl,
            "sensitive": v.sensitive,
            "description": v.description,
            "created-at": iso(v.created_at),
        },
        {"configurable": {"data": {"type": "workspaces", "id": v.workspace_id}}},
        {"self": f"/api/v2/workspaces/{v.workspace_id}/vars/{v.id}"},
    )


def user(u: User) -> Resource:
    return resource(
        "users",
        u.id,
        {"username": u.username, "email": u.email, "is-service-account": False, "two-factor": {"enabled": False}},
        None,
        {"self": f"/api/v2/users/{u.id}"},
    )


def user_token(token: UserToken, secret: str | None = None) -> Resource:
    """A user API token; the secret only in the answer to its creation."""
    return resource(
        "authentication-tokens",
        token.id,
        {
            "description": token.description,
            "created-at": iso(token.created_at),
            "last-used-at": iso(token.last_used_at),
            "expired-at": None,
            "token": secret,
        },
        {"created-by": to_one("users", token.user_id)},
    )


def team(t: Team, organization_access: dict[str, bool], user_ids: list[str], permissions: dict[str, bool]) -> Resource:
    return resource(
        "teams",
        t.id,
        {
            "name": t.name,
            "users-count": len(user_ids),
            "visibility": "organization",
            "organization-access": organization_access,
            "permissions": permissions,
        },
        {
            "organization": to_one("organizations", t.organization_id),
            "users": to_many("users", user_ids),
        },
        {"self": f"/api/v2/teams/{t.id}"},
    )


def team_workspace(grant: TeamWorkspace) -> Resource:
    return resource(
        "team-workspaces",
        grant.id,
        {"access": grant.access},
        {"team": to_one("teams", grant.team_id), "workspace": to_one("workspaces", grant.workspace_id)},
        {"self": f"/api/v2/team-workspaces/{grant.id}"},
    )


def organization_membership(m: OrganizationMembership, u: User, team_ids: list[str]) -> Resource:
    return resource(
        "organization-memberships",
        m.id,
        {"status": "active", "email": u.email},
        {
            "organization": to_one("organizations", m.organization_id),
            "user": to_one("users", u.id),
            "teams": to_many("teams", team_ids),
        },
        {"self": f"/api/v2/organization-memberships/{m.id}"},
    )
