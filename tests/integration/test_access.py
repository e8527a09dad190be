"""Teams and access levels end to end over HTTP: what each level may do, and JSON permissions that say so.
Also user tokens: listed without their secret, revoked at once, invisible to others."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from outpost.admin import issue_token
from tests.support.processes import Server
from tests.support.world import Client, World

pytestmark = pytest.mark.integration


@pytest.fixture
def world(server: Server, org: tuple[str, str]) -> Iterator[World]:
    w = World(url=server.url, db_url=server.db_url, org=org[0])
    w.owner = Client(server.url, org[1])
    w.users["owner"] = w.owner
    yield w
    w.close()


def _status(client: Client, method: str, path: str, body: Any = None) -> int:
    return client.call(method, "/api/v2" + path, body).status_code


def _run_body(ws: str, cv: str, **attrs: Any) -> dict[str, Any]:
    return {
        "data": {
            "type": "runs",
            "attributes": attrs,
            "relationships": {
                "workspace": {"data": {"type": "workspaces", "id": ws}},
                "configuration-version": {"data": {"type": "configuration-versions", "id": cv}},
            },
        }
    }


def test_levels_decide_and_permissions_tell(world: World) -> None:
    pool = world.owner.ok(  # type: ignore[union-attr]
        "POST",
        f"/organizations/{world.org}/agent-pools",
        {"data": {"type": "agent-pools", "attributes": {"name": "idle"}}},
    )["data"]["id"]
    ws = world.workspace("app", **{"execution-mode": "agent", "agent-pool-id": pool, "auto-apply": False})
    cv = world.upload(ws)
    team = world.team("devs")
    alice = world.member("alice", [team])

    # No access: the workspace does not exist for her, and lists leave it out.
    assert _status(alice, "GET", f"/workspaces/{ws}") == 404
    assert _status(alice, "GET", f"/organizations/{world.org}/workspaces/app") == 404
    assert alice.ok("GET", f"/organizations/{world.org}/workspaces")["data"] == []

    grant = world.grant(team, ws, "read")
    perms = alice.ok("GET", f"/workspaces/{ws}")["data"]["attributes"]["permissions"]
    assert perms["can-read-settings"] and not perms["can-queue-run"] and not perms["can-update"]
    assert [w["id"] for w in alice.ok("GET", f"/organizations/{world.org}/workspaces")["data"]] == [ws]
    denied = alice.call("POST", "/api/v2/runs", _run_body(ws, cv, **{"plan-only": True}))
    assert denied.status_code == 403 and "plan access" in denied.json()["errors"][0]["detail"]

    world.owner.ok(
        "PATCH", f"/team-workspaces/{grant}", {"data": {"type": "team-workspaces", "attributes": {"access": "plan"}}}
    )  # type: ignore[union-attr]
    perms = alice.ok("GET", f"/workspaces/{ws}")["data"]["attributes"]["permissions"]
    assert perms["can-queue-run"] and not perms["can-queue-apply"]
    run = alice.ok("POST", "/runs", _run_body(ws, cv))["data"]  # queuing a plan: allowed
    assert run["attributes"]["permissions"] == {
        "can-apply": False,
        "can-cancel": False,
        "can-discard": False,
        "can-force-cancel": False,
        "can-force-execute": False,
    }
    assert _status(alice, "POST", f"/runs/{run['id']}/actions/apply") == 403  # applying: not allowed
    assert _status(alice, "POST", f"/runs/{run['id']}/actions/discard") == 403
    # A run that would apply by itself, or destroy, needs what those need.
    assert _status(alice, "POST", "/runs", _run_body(ws, cv, **{"auto-apply": True})) == 403
    assert _status(alice, "POST", "/runs", _run_body(ws, cv, **{"is-destroy": True})) == 403
    assert _status(alice, "POST", f"/workspaces/{ws}/actions/lock", {"reason": "x"}) == 403
    # The owner sees the same run with every permission.
    assert world.owner.ok("GET", f"/runs/{run['id']}")["data"]["attributes"]["permissions"]["can-apply"]  # type: ignore[union-attr]

    world.owner.ok(
        "PATCH", f"/team-workspaces/{grant}", {"data": {"type": "team-workspaces", "attributes": {"access": "write"}}}
    )  # type: ignore[union-attr]
    assert alice.ok("GET", f"/runs/{run['id']}")["data"]["attributes"]["permissions"]["can-apply"] is True
    assert _status(alice, "POST", f"/runs/{run['id']}/actions/cancel") == 202
    assert _status(alice, "POST", f"/workspaces/{ws}/actions/lock", {"reason": "x"}) == 200
    assert _status(alice, "POST", f"/workspaces/{ws}/actions/unlock") == 200
    settings = {"data": {"type": "workspaces", "attributes": {"description": "mine"}}}
    assert _status(alice, "PATCH", f"/workspaces/{ws}", settings) == 403
    mode = {"data": {"type": "workspaces", "attributes": {"execution-mode": "remote"}}}
    assert _status(alice, "PATCH", f"/workspaces/{ws}", mode) == 403
    assert world.owner.ok("GET", f"/workspaces/{ws}")["data"]["attributes"]["execution-mode"] == "agent"  # type: ignore[union-attr]

    world.owner.ok(
        "PATCH", f"/team-workspaces/{grant}", {"data": {"type": "team-workspaces", "attributes": {"access": "admin"}}}
    )  # type: ignore[union-attr]
    perms = alice.ok("GET", f"/workspaces/{ws}")["data"]["attributes"]["permissions"]
    assert perms["can-change-execution-mode"] and perms["can-update"]
    assert alice.ok("PATCH", f"/workspaces/{ws}", mode)["data"]["attributes"]["execution-mode"] == "remote"
    # Still a member only: pools and their tokens are the owners'.
    assert _status(alice, "GET", f"/agent-pools/{pool}/authentication-tokens") == 403
    assert (
        _status(
            alice,
            "POST",
            f"/organizations/{world.org}/workspaces",
            {"data": {"type": "workspaces", "attributes": {"name": "new"}}},
        )
        == 403
    )

    # Taking the access away takes it away at once.
    world.owner.ok("DELETE", f"/team-workspaces/{grant}")  # type: ignore[union-attr]
    assert _status(alice, "GET", f"/workspaces/{ws}") == 404


def test_organization_access_of_teams(world: World) -> None:
    managers = world.team("managers", manage_workspaces=True)
    readers = world.team("everyone-reads", read_workspaces=True)
    hr = world.team("hr", manage_membership=True)
    ws = world.workspace("existing")
    bob = world.member("bob", [managers])
    carol = world.member("carol", [readers])
    dave = world.member("dave", [hr])
    created = bob.ok(
        "POST",
        f"/organizations/{world.org}/workspaces",
        {"data": {"type": "workspaces", "attributes": {"name": "bobs"}}},
    )
    assert created["data"]["attributes"]["permissions"]["can-update"]  # manage-workspaces: admin everywhere
    assert bob.ok("GET", f"/organizations/{world.org}")["data"]["attributes"]["permissions"]["can-create-workspace"]
    assert carol.ok("GET", f"/workspaces/{ws}")["data"]["attributes"]["permissions"]["can-queue-run"] is False
    assert (
        _status(
            carol,
            "POST",
            f"/organizations/{world.org}/workspaces",
            {"data": {"type": "workspaces", "attributes": {"name": "c"}}},
        )
        == 403
    )
    # manage-membership: invite and place people in teams, but never in the owners team, never grant rights.
    invited = {"data": {"type": "organization-memberships", "attributes": {"email": f"e-{uuid.uuid4().hex[:6]}@x.io"}}}
    assert _status(dave, "POST", f"/organizations/{world.org}/organization-memberships", invited) == 201
    owners = next(
        t
        for t in world.owner.ok("GET", f"/organizations/{world.org}/teams")["data"]
        if t["attributes"]["name"] == "owners"
    )  # type: ignore[union-attr]
    add_self = {"data": [{"type": "users", "id": world.user_ids["dave"]}]}
    assert _status(dave, "POST", f"/teams/{owners['id']}/relationships/users", add_self) == 403
    assert _status(dave, "POST", f"/teams/{readers}/relationships/users", add_self) == 204
    grant_rights = {"data": {"type": "teams", "attributes": {"organization-access": {"manage-workspaces": True}}}}
    assert _status(dave, "PATCH", f"/teams/{hr}", grant_rights) == 403
    members = world.owner.ok("GET", f"/teams/{readers}")["data"]["relationships"]["users"]["data"]  # type: ignore[union-attr]
    assert {"type": "users", "id": world.user_ids["dave"]} in members


def test_the_owners_team_keeps_an_owner(world: World) -> None:
    owners = next(
        t
        for t in world.owner.ok("GET", f"/organizations/{world.org}/teams")["data"]
        if t["attributes"]["name"] == "owners"
    )  # type: ignore[union-attr]
    me = world.owner.ok("GET", "/account/details")["data"]["id"]  # type: ignore[union-attr]
    resp = world.owner.call(
        "DELETE", f"/api/v2/teams/{owners['id']}/relationships/users", {"data": [{"type": "users", "id": me}]}
    )  # type: ignore[union-attr]
    assert resp.status_code == 422 and "at least one member" in resp.json()["errors"][0]["detail"]
    assert world.owner.call("DELETE", f"/api/v2/teams/{owners['id']}").status_code == 422  # type: ignore[union-attr]


def test_user_tokens_listed_without_secret_and_revoked_at_once(world: World, server: Server) -> None:
    erin = world.member("erin", [])
    me = world.user_ids["erin"]
    made = erin.ok(
        "POST",
        f"/users/{me}/authentication-tokens",
        {"data": {"type": "authentication-tokens", "attributes": {"description": "ci"}}},
    )["data"]
    secret = made["attributes"]["token"]
    assert secret.startswith("opu_") and len(secret) > 40
    listed = erin.ok("GET", f"/users/{me}/authentication-tokens")["data"]
    assert {t["id"] for t in listed} >= {made["id"]}
    assert all(t["attributes"]["token"] is None for t in listed)
    assert erin.ok("GET", f"/authentication-tokens/{made['id']}")["data"]["attributes"]["token"] is None
    ci = Client(server.url, secret)
    try:
        assert _status(ci, "GET", "/account/details") == 200
        # Another user cannot see or revoke it, even an owner of the same organization.
        assert _status(world.owner, "GET", f"/authentication-tokens/{made['id']}") == 404  # type: ignore[arg-type]
        assert _status(world.owner, "DELETE", f"/authentication-tokens/{made['id']}") == 404  # type: ignore[arg-type]
        assert _status(world.owner, "GET", f"/users/{me}/authentication-tokens") == 404  # type: ignore[arg-type]
        assert _status(erin, "DELETE", f"/authentication-tokens/{made['id']}") == 204
        assert _status(ci, "GET", "/account/details") == 401  # revoked: refused on the next request
        assert made["id"] not in {t["id"] for t in erin.ok("GET", f"/users/{me}/authentication-tokens")["data"]}
    finally:
        ci.close()


def test_issue_token_for_an_unknown_user_is_a_clear_error(server: Server) -> None:
    from outpost.errors import NotFound

    with pytest.raises(NotFound) as caught:
        asyncio.run(issue_token(server.db_url, "nobody@example.com", "x"))
    assert "invite" in caught.value.detail


def test_agent_tokens_are_listed_without_secret(world: World) -> None:
    owner = world.owner
    assert owner is not None
    pool, made = world.pool("p")
    assert made["attributes"]["token"].startswith("opa_")
    listed = owner.ok("GET", f"/agent-pools/{pool}/authentication-tokens")["data"]
    assert [t["attributes"]["token"] for t in listed] == [None]
    assert owner.ok("GET", f"/authentication-tokens/{made['id']}")["data"]["attributes"]["token"] is None
