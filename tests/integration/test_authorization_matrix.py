"""Every /api/v2 endpoint against every kind of caller, over real HTTP.

The endpoints are enumerated from the application's routes, so a new endpoint cannot be forgotten: it
must declare its action (a `guard(Action.X)` dependency) or be one of the few public capability URLs,
and it must have a request body here if it takes one. What each caller should get follows from the
permission table (`outpost.domain.permissions.RULES`): agent credentials and no credential are 401,
another organization's member 404, a member who cannot see the workspace 404, one who can see it but
lacks the level or right 403, and everyone allowed anything but 401/403/404 (a 409 or 422 still shows
that authorization let the request through). The table itself is checked against Terraform Cloud's
rules in tests/unit/test_permissions.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from outpost.config import ServerConfig
from outpost.domain.permissions import RULES, Access, Action, OrgRight, Scope, organization_allows
from outpost.server.app import create_app
from tests.support.processes import Server
from tests.support.routes import endpoints
from tests.support.world import AgentProtocol, Client, World, build

pytestmark = pytest.mark.integration

PUBLIC = {
    ("GET", "/api/v2/ping"),
    ("PUT", "/api/v2/uploads/{cv_id}/{capability}"),
    ("GET", "/api/v2/logs/{log_id}/{capability}"),
    ("GET", "/api/v2/state-versions/{sv_id}/download/{capability}"),
}


@dataclass(frozen=True)
class Role:
    member: bool = False
    rights: frozenset[OrgRight] = frozenset()
    level: Access = Access.NONE
    user: bool = True


ROLES: dict[str, Role] = {
    "owner": Role(True, frozenset(OrgRight), Access.ADMIN),
    "member, no team access": Role(True, frozenset({OrgRight.MEMBER}), Access.NONE),
    "member, read access": Role(True, frozenset({OrgRight.MEMBER}), Access.READ),
    "member, write access": Role(True, frozenset({OrgRight.MEMBER}), Access.WRITE),
    "other-org": Role(),
    "no credential": Role(user=False),
    "pool token": Role(user=False),
    "agent session": Role(user=False),
    "job credential of another run": Role(user=False),
}

ALLOWED = "allowed"


def expected(action: Action, role: Role) -> str | int:
    if not role.user:
        return 401
    rule = RULES[action]
    if rule.scope == Scope.USER:
        return ALLOWED
    if not role.member:
        return 404
    if rule.scope == Scope.ORGANIZATION:
        return ALLOWED if organization_allows(role.rights, action) else 403
    assert rule.level is not None
    if role.level == Access.NONE:
        return 404
    return ALLOWED if role.level >= rule.level else 403


def routes() -> list[tuple[str, str, Action | None]]:
    app = create_app(ServerConfig())
    return [(e.method, e.path, e.action) for e in endpoints(app) if e.path.startswith("/api/v2")]


ROUTES = routes()


def test_every_endpoint_is_guarded_or_a_public_capability() -> None:
    unguarded = {(m, p) for m, p, action in ROUTES if action is None}
    assert unguarded == PUBLIC, f"endpoints without guard(Action.X): {sorted(unguarded - PUBLIC)}"
    assert len(ROUTES) > 60


# --- request bodies, and fresh targets for the requests that destroy -----------------------------


def _ref(kind: str, id_: str) -> dict[str, Any]:
    return {"data": {"type": kind, "id": id_}}


def bodies(w: World) -> dict[tuple[str, str], Callable[[], Any]]:
    ws, team = w.ids["workspace_id"], w.teams["no-members"]
    return {
        ("POST", "/api/v2/organizations"): lambda: {
            "data": {"type": "organizations", "attributes": {"name": f"o-{uuid.uuid4().hex[:10]}", "email": "a@b.c"}}
        },
        ("POST", "/api/v2/organizations/{org}/workspaces"): lambda: {
            "data": {"type": "workspaces", "attributes": {"name": f"w-{uuid.uuid4().hex[:8]}"}}
        },
        ("PATCH", "/api/v2/workspaces/{workspace_id}"): lambda: {
            "data": {"type": "workspaces", "attributes": {"description": "changed"}}
        },
        ("PATCH", "/api/v2/organizations/{org}/workspaces/{name}"): lambda: {
            "data": {"type": "workspaces", "attributes": {"description": "changed"}}
        },
        ("POST", "/api/v2/workspaces/{workspace_id}/actions/lock"): lambda: {"reason": "matrix"},
        ("POST", "/api/v2/workspaces/{workspace_id}/vars"): lambda: {
            "data": {"type": "vars", "attributes": {"key": f"k{uuid.uuid4().hex[:6]}", "value": "x", "category": "env"}}
        },
        ("PATCH", "/api/v2/workspaces/{workspace_id}/vars/{var_id}"): lambda: {
            "data": {"type": "vars", "attributes": {"value": "2"}}
        },
        ("POST", "/api/v2/workspaces/{workspace_id}/configuration-versions"): lambda: {
            "data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}
        },
        ("POST", "/api/v2/runs"): lambda: {
            "data": {
                "type": "runs",
                "attributes": {"plan-only": True},
                "relationships": {
                    "workspace": _ref("workspaces", ws),
                    "configuration-version": _ref("configuration-versions", w.ids["cv_id"]),
                },
            }
        },
        ("POST", "/api/v2/workspaces/{workspace_id}/state-versions"): lambda: {
            "data": {"type": "state-versions", "attributes": {"serial": 9, "state": "e30="}}
        },
        ("POST", "/api/v2/organizations/{org}/agent-pools"): lambda: {
            "data": {"type": "agent-pools", "attributes": {"name": f"p-{uuid.uuid4().hex[:8]}"}}
        },
        ("PATCH", "/api/v2/agent-pools/{pool_id}"): lambda: {"data": {"type": "agent-pools", "attributes": {}}},
        ("POST", "/api/v2/agent-pools/{pool_id}/authentication-tokens"): lambda: {
            "data": {"type": "authentication-tokens", "attributes": {"description": "matrix"}}
        },
        ("POST", "/api/v2/users/{user_id}/authentication-tokens"): lambda: {
            "data": {"type": "authentication-tokens", "attributes": {"description": "matrix"}}
        },
        ("POST", "/api/v2/organizations/{org}/teams"): lambda: {
            "data": {"type": "teams", "attributes": {"name": f"t-{uuid.uuid4().hex[:8]}"}}
        },
        ("PATCH", "/api/v2/teams/{team_id}"): lambda: {"data": {"type": "teams", "attributes": {}}},
        ("POST", "/api/v2/teams/{team_id}/relationships/users"): lambda: {
            "data": [{"type": "users", "id": w.user_ids["member, no team access"]}]
        },
        ("DELETE", "/api/v2/teams/{team_id}/relationships/users"): lambda: {
            "data": [{"type": "users", "id": w.ids["fresh_user"]}]
        },
        ("POST", "/api/v2/organizations/{org}/organization-memberships"): lambda: {
            "data": {"type": "organization-memberships", "attributes": {"email": f"i-{uuid.uuid4().hex[:8]}@x.io"}}
        },
        ("POST", "/api/v2/team-workspaces"): lambda: {
            "data": {
                "type": "team-workspaces",
                "attributes": {"access": "read"},
                "relationships": {"team": _ref("teams", team), "workspace": _ref("workspaces", ws)},
            }
        },
        ("PATCH", "/api/v2/team-workspaces/{access_id}"): lambda: {
            "data": {"type": "team-workspaces", "attributes": {"access": "read"}}
        },
    }


def fresh_targets(w: World) -> dict[tuple[str, str], Callable[[], dict[str, str]]]:
    """Requests that destroy get a new target each time, set up so that every role sees it as it sees
    the organization's target workspace (the same team access)."""
    owner = w.owner
    assert owner is not None

    def workspace() -> dict[str, str]:
        name = f"d-{uuid.uuid4().hex[:8]}"
        ws = w.workspace(name)
        w.grant(w.teams["readers"], ws, "read")
        w.grant(w.teams["writers"], ws, "write")
        return {"workspace_id": ws, "name": name}

    def variable() -> dict[str, str]:
        body = {
            "data": {"type": "vars", "attributes": {"key": f"d{uuid.uuid4().hex[:6]}", "value": "1", "category": "env"}}
        }
        return {"var_id": owner.ok("POST", f"/workspaces/{w.ids['workspace_id']}/vars", body)["data"]["id"]}

    def pool() -> dict[str, str]:
        body = {"data": {"type": "agent-pools", "attributes": {"name": f"d-{uuid.uuid4().hex[:8]}"}}}
        return {"pool_id": owner.ok("POST", f"/organizations/{w.org}/agent-pools", body)["data"]["id"]}

    def token() -> dict[str, str]:
        body = {"data": {"type": "authentication-tokens", "attributes": {"description": "d"}}}
        return {
            "token_id": owner.ok("POST", f"/agent-pools/{w.ids['pool_id']}/authentication-tokens", body)["data"]["id"]
        }

    def agent() -> dict[str, str]:
        body = {"data": {"type": "authentication-tokens", "attributes": {"description": "d"}}}
        secret = owner.ok("POST", f"/agent-pools/{w.ids['pool_id']}/authentication-tokens", body)["data"]["attributes"][
            "token"
        ]
        protocol = AgentProtocol(w.url)
        try:
            agent_id, session = protocol.register(secret, capacity=1)
            assert protocol.call("POST", "/deregister", session).status_code == 204  # exited: deletable
        finally:
            protocol.close()
        return {"agent_id": agent_id}

    def team() -> dict[str, str]:
        return {"team_id": w.team(f"d-{uuid.uuid4().hex[:8]}")}

    def team_with_member() -> dict[str, str]:
        team_id = w.team(f"d-{uuid.uuid4().hex[:8]}")
        role = f"fresh-{uuid.uuid4().hex[:6]}"
        w.member(role, [team_id])
        w.ids["fresh_user"] = w.user_ids[role]
        return {"team_id": team_id}

    def membership() -> dict[str, str]:
        role = f"leaver-{uuid.uuid4().hex[:6]}"
        w.member(role, [])
        return {"membership_id": w.ids[f"membership:{role}"]}

    def grant() -> dict[str, str]:
        return {"access_id": w.grant(w.team(f"d-{uuid.uuid4().hex[:8]}"), w.ids["workspace_id"], "read")}

    return {
        ("DELETE", "/api/v2/workspaces/{workspace_id}"): workspace,
        ("DELETE", "/api/v2/organizations/{org}/workspaces/{name}"): workspace,
        ("DELETE", "/api/v2/workspaces/{workspace_id}/vars/{var_id}"): variable,
        ("DELETE", "/api/v2/agent-pools/{pool_id}"): pool,
        ("DELETE", "/api/v2/authentication-tokens/{token_id}"): token,
        ("DELETE", "/api/v2/agents/{agent_id}"): agent,
        ("DELETE", "/api/v2/teams/{team_id}"): team,
        ("DELETE", "/api/v2/teams/{team_id}/relationships/users"): team_with_member,
        ("DELETE", "/api/v2/organization-memberships/{membership_id}"): membership,
        ("DELETE", "/api/v2/team-workspaces/{access_id}"): grant,
    }


QUERIES = {("GET", "/api/v2/team-workspaces"): lambda w: {"filter[workspace][id]": w.ids["workspace_id"]}}
# Actions whose body is optional (real clients send none).
NO_BODY = (
    "/actions/apply",
    "/actions/discard",
    "/actions/cancel",
    "/actions/force-cancel",
    "/actions/unlock",
    "/actions/force-unlock",
)
# Path parameters other than the world's defaults: adding a user to a team with no access changes no one's
# rights (and granting access to a team with no members neither: see bodies()).
PARAMS = {("POST", "/api/v2/teams/{team_id}/relationships/users"): lambda w: {"team_id": w.teams["no-grants"]}}


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[World]:
    built = build(server.url, server.db_url)
    yield built
    built.close()


def _callers(world: World) -> dict[str, Client]:
    callers = dict(world.users)
    callers["no credential"] = Client(world.url, None)
    for kind, secret in world.credentials.items():
        callers[kind] = Client(world.url, secret)
    return {role: callers[role] for role in ROLES}


def test_authorization_matrix(world: World) -> None:
    callers = _callers(world)
    body_for = bodies(world)
    fresh = fresh_targets(world)
    # Deleting the organization goes last of all, the owner last: it ends the world.
    order = sorted(
        ((m, p, a) for m, p, a in ROUTES if a is not None),
        key=lambda r: (r[1] == "/api/v2/organizations/{org}" and r[0] == "DELETE", r[0] == "DELETE"),
    )
    failures: list[str] = []
    checked = 0
    try:
        for method, path, action in order:
            assert action is not None
            if method in ("POST", "PATCH") and (method, path) not in body_for and not path.endswith(NO_BODY):
                failures.append(f"{method} {path}: no request body in this test's table; add one")
                continue
            roles = sorted(ROLES, key=lambda r: r == "owner")  # the owner last: its request may change things
            for role in roles:
                params = dict(world.ids)
                if (method, path) in PARAMS:
                    params.update(PARAMS[(method, path)](world))
                if (method, path) in fresh:
                    params.update(fresh[(method, path)]())
                params["user_id"] = world.user_ids.get(role, world.user_ids["owner"])
                url = path.format(**params)
                body = body_for[(method, path)]() if (method, path) in body_for else None
                query = QUERIES[(method, path)](world) if (method, path) in QUERIES else None
                resp = callers[role].call(method, url, body, params=query)
                want = expected(action, ROLES[role])
                got = resp.status_code
                checked += 1
                if got >= 500:
                    failures.append(f"{method} {path} as {role}: {got} {resp.text[:200]}")
                elif want == ALLOWED and got in (401, 403, 404):
                    failures.append(
                        f"{method} {path} as {role}: {got}, expected to be allowed ({action}): {resp.text[:200]}"
                    )
                elif want != ALLOWED and got != want:
                    failures.append(f"{method} {path} as {role}: {got}, expected {want} ({action}): {resp.text[:200]}")
                elif got >= 400:
                    error = resp.json()["errors"][0]
                    assert error["status"] == str(got) and error["title"] and error["detail"], resp.text
    finally:
        for role, client in callers.items():
            if role not in world.users:
                client.close()
    assert not failures, "\n".join(failures)
    assert checked == len(ROLES) * len([r for r in ROUTES if r[2] is not None])
