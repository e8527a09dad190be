"""Agent-side credentials over real HTTP: the pool token only registers, a session only polls and
heartbeats, a job credential reaches only its own job, only what its phase needs, and only while the job
is active and its agent in good standing. Pools limited to allowed workspaces keep runs to themselves."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outpost.admin import bootstrap
from tests.support.processes import Server, start_server
from tests.support.world import AgentProtocol, Client, World

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[Server]:
    """A server of its own that declares silent agents errored within seconds."""
    srv = start_server(
        tmp_path_factory.mktemp("quick"),
        tools_dir,
        "--no-builtin-agent",
        "--agent-unknown-after",
        "1",
        "--agent-errored-after",
        "1",
        "--monitor-interval",
        "0.2",
    )
    yield srv
    srv.proc.stop()


def _world(srv: Server) -> World:
    w = World(url=srv.url, db_url=srv.db_url, org=f"jobs-{uuid.uuid4().hex[:8]}")
    w.owner = Client(srv.url, asyncio.run(bootstrap(srv.db_url, w.org, f"o-{uuid.uuid4().hex[:6]}@x.io")))
    w.users["owner"] = w.owner
    return w


@pytest.fixture
def world(quick: Server) -> Iterator[World]:
    w = _world(quick)
    yield w
    w.close()


@pytest.fixture
def protocol(quick: Server) -> Iterator[AgentProtocol]:
    p = AgentProtocol(quick.url)
    yield p
    p.close()


@pytest.fixture
def steady(server: Server) -> Iterator[tuple[World, AgentProtocol]]:
    """The shared server, whose agents stay idle for minutes without a heartbeat (their jobs stay theirs)."""
    w, p = _world(server), AgentProtocol(server.url)
    yield w, p
    p.close()
    w.close()


def _pool(world: World, name: str, scoped: bool = True, allowed: list[str] | None = None) -> tuple[str, str]:
    owner = world.owner
    assert owner is not None
    body: dict[str, Any] = {
        "data": {"type": "agent-pools", "attributes": {"name": name, "organization-scoped": scoped}}
    }
    if allowed is not None:
        body["data"]["relationships"] = {
            "allowed-workspaces": {"data": [{"type": "workspaces", "id": w} for w in allowed]}
        }
    pool = owner.ok("POST", f"/organizations/{world.org}/agent-pools", body)["data"]["id"]
    token = owner.ok(
        "POST",
        f"/agent-pools/{pool}/authentication-tokens",
        {"data": {"type": "authentication-tokens", "attributes": {"description": name}}},
    )["data"]
    return pool, token["attributes"]["token"]


def _queued_run(world: World, pool: str, name: str) -> dict[str, Any]:
    ws = world.workspace(name, **{"execution-mode": "agent", "agent-pool-id": pool})
    return world.run(ws, world.upload(ws))


def test_each_credential_reaches_only_its_part(steady: tuple[World, AgentProtocol]) -> None:
    world, protocol = steady
    pool, pool_token = _pool(world, "p")
    plan_run = _queued_run(world, pool, "a")
    other_run = _queued_run(world, pool, "b")
    agent_id, session = protocol.register(pool_token)
    jobs = {j["run_id"]: j for j in protocol.claim(session, 2)}
    mine, other = jobs[plan_run["id"]], jobs[other_run["id"]]
    user_token = world.owner.token  # type: ignore[union-attr]

    # The pool token registers and does nothing else; a user token does nothing here at all.
    for path, method in [("/poll", "POST"), ("/heartbeat", "POST"), (f"/jobs/{mine['id']}", "GET")]:
        assert protocol.call(method, path, pool_token, json={}).status_code == 401, path
        assert protocol.call(method, path, user_token, json={}).status_code == 401, path
    assert protocol.call("POST", "/register", session, json={}).status_code == 401
    assert protocol.call("POST", "/register", user_token, json={}).status_code == 401
    # The session polls and heartbeats, and reaches no job.
    assert protocol.call("POST", "/heartbeat", session, json={}).status_code == 200
    assert protocol.call("GET", f"/jobs/{mine['id']}", session).status_code == 401

    # A job credential reaches its own job, never another one.
    assert protocol.call("GET", f"/jobs/{mine['id']}", mine["token"]).status_code == 200
    for path in ("", "/configuration", "/state"):
        assert protocol.call("GET", f"/jobs/{other['id']}{path}", mine["token"]).status_code == 404
    assert protocol.call("PUT", f"/jobs/{other['id']}/logs?offset=0", mine["token"], content=b"x").status_code == 404
    # And only what its phase needs: a plan job writes no state and reads no saved plan.
    assert protocol.call("POST", f"/jobs/{mine['id']}/start", mine["token"]).status_code == 204
    refused = protocol.call("PUT", f"/jobs/{mine['id']}/state", mine["token"], content=b"{}")
    assert refused.status_code == 403 and "cannot write state" in refused.json()["errors"][0]["detail"]
    assert protocol.call("GET", f"/jobs/{mine['id']}/plan-file", mine["token"]).status_code == 403
    assert (
        protocol.call("PUT", f"/jobs/{mine['id']}/logs?offset=0", mine["token"], content=b"hello\n").status_code == 200
    )

    # Once the job ends, its credential is dead for everything.
    done = protocol.call("POST", f"/jobs/{mine['id']}/finish", mine["token"], json={"outcome": "failed", "log_size": 6})
    assert done.status_code == 204, done.text
    for method, path in [("GET", ""), ("GET", "/configuration"), ("POST", "/start")]:
        resp = protocol.call(method, f"/jobs/{mine['id']}{path}", mine["token"])
        assert resp.status_code == 403 and resp.json()["errors"][0]["title"] == "job no longer active"
    assert protocol.call("GET", f"/jobs/{other['id']}", other["token"]).status_code == 200
    assert world.owner.ok("GET", f"/agents/{agent_id}")["data"]["attributes"]["status"] == "busy"  # type: ignore[union-attr]


def _plan_and_claim_apply(
    world: World, protocol: AgentProtocol, pool: str, pool_token: str, name: str, *, plan_json: bytes | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """An auto-applied run planned with changes (its JSON stored by the plan job or not): the run, the
    apply job's payload and the apply job as claimed."""
    ws = world.workspace(name, **{"execution-mode": "agent", "agent-pool-id": pool, "auto-apply": True})
    run = world.run(ws, world.upload(ws))
    _, session = protocol.register(pool_token)
    (plan_job,) = protocol.claim(session, 1)
    payload = protocol.call("GET", f"/jobs/{plan_job['id']}", plan_job["token"]).json()
    assert payload["run"]["auto_apply"] is True  # what lets the agent leave the JSON to the apply
    assert protocol.call("POST", f"/jobs/{plan_job['id']}/start", plan_job["token"]).status_code == 204
    put = protocol.call("PUT", f"/jobs/{plan_job['id']}/plan-file", plan_job["token"], content=b"saved plan")
    assert put.status_code == 204, put.text
    if plan_json is not None:
        put = protocol.call("PUT", f"/jobs/{plan_job['id']}/plan-json", plan_job["token"], content=plan_json)
        assert put.status_code == 204, put.text
    result = {"outcome": "succeeded", "has_changes": True, "additions": 1, "log_size": 0}
    assert protocol.call("POST", f"/jobs/{plan_job['id']}/finish", plan_job["token"], json=result).status_code == 204
    (apply_job,) = protocol.claim(session, 1)
    assert apply_job["run_id"] == run["id"]
    payload = protocol.call("GET", f"/jobs/{apply_job['id']}", apply_job["token"]).json()
    assert payload["phase"] == "apply"
    return run, payload, apply_job


def test_an_apply_job_writes_only_the_json_of_a_plan_that_has_none(steady: tuple[World, AgentProtocol]) -> None:
    world, protocol = steady
    owner = world.owner
    assert owner is not None
    pool, pool_token = _pool(world, "p")
    run, payload, job = _plan_and_claim_apply(world, protocol, pool, pool_token, "deferred", plan_json=None)
    plan_id = run["relationships"]["plan"]["data"]["id"]
    assert payload["plan_json_stored"] is False
    missing = owner.call("GET", f"/api/v2/plans/{plan_id}/json-output")
    assert missing.status_code == 404 and "no JSON output yet" in missing.text

    # The apply stores the missing JSON, and the same bytes again (a retry after a lost answer) change
    # nothing; other bytes, or the saved plan itself, are refused.
    rendered = b'{"resource_changes": [{"address": "null_resource.a", "change": {"actions": ["create"]}}]}'
    for _ in range(2):
        put = protocol.call("PUT", f"/jobs/{job['id']}/plan-json", job["token"], content=rendered)
        assert put.status_code == 204, put.text
    refused = protocol.call("PUT", f"/jobs/{job['id']}/plan-json", job["token"], content=b'{"other": 1}')
    assert refused.status_code == 409 and "already stored" in refused.json()["errors"][0]["detail"]
    refused = protocol.call("PUT", f"/jobs/{job['id']}/plan-file", job["token"], content=b"another plan")
    assert refused.status_code == 403
    got = owner.call("GET", f"/api/v2/plans/{plan_id}/json-output")
    assert got.content == rendered, got.text
    assert protocol.call("GET", f"/jobs/{job['id']}/plan-file", job["token"]).content == b"saved plan"

    # A plan that stored its own JSON keeps it: the apply is told so, and may not replace it.
    run, payload, job = _plan_and_claim_apply(world, protocol, pool, pool_token, "stored", plan_json=b'{"mine": 1}')
    assert payload["plan_json_stored"] is True
    refused = protocol.call("PUT", f"/jobs/{job['id']}/plan-json", job["token"], content=rendered)
    assert refused.status_code == 409
    plan_id = run["relationships"]["plan"]["data"]["id"]
    assert owner.call("GET", f"/api/v2/plans/{plan_id}/json-output").content == b'{"mine": 1}'


def test_job_credential_dies_with_its_errored_agent(world: World, protocol: AgentProtocol) -> None:
    pool, pool_token = _pool(world, "p")
    run = _queued_run(world, pool, "a")
    _, session = protocol.register(pool_token, capacity=1)
    (job,) = protocol.claim(session, 1)
    assert protocol.call("POST", f"/jobs/{job['id']}/start", job["token"]).status_code == 204
    # No heartbeat: unknown after 1 s, errored 1 s later (this server's settings); the job dies with it.
    deadline = time.monotonic() + 30
    while protocol.call("GET", f"/jobs/{job['id']}", job["token"]).status_code == 200:
        assert time.monotonic() < deadline, "the job credential outlived its errored agent"
        time.sleep(0.2)
    resp = protocol.call("GET", f"/jobs/{job['id']}/configuration", job["token"])
    assert resp.status_code == 403
    assert world.owner.ok("GET", f"/runs/{run['id']}")["data"]["attributes"]["status"] == "errored"  # type: ignore[union-attr]


def test_job_credential_dies_with_its_revoked_pool_token(steady: tuple[World, AgentProtocol]) -> None:
    world, protocol = steady
    pool, pool_token = _pool(world, "p")
    _queued_run(world, pool, "a")
    _, session = protocol.register(pool_token, capacity=1)
    (job,) = protocol.claim(session, 1)
    token_id = world.owner.ok("GET", f"/agent-pools/{pool}/authentication-tokens")["data"][0]["id"]  # type: ignore[union-attr]
    world.owner.ok("DELETE", f"/authentication-tokens/{token_id}")  # type: ignore[union-attr]
    assert protocol.call("GET", f"/jobs/{job['id']}", job["token"]).status_code == 403


def test_pool_limited_to_allowed_workspaces(steady: tuple[World, AgentProtocol]) -> None:
    world, protocol = steady
    owner = world.owner
    assert owner is not None
    general, general_token = _pool(world, "general")
    ws_in = world.workspace("allowed")
    ws_out = world.workspace("not-allowed")
    limited, limited_token = _pool(world, "limited", scoped=False, allowed=[ws_in])

    # A workspace outside the list cannot select the pool.
    resp = owner.call(
        "PATCH",
        f"/api/v2/workspaces/{ws_out}",
        {"data": {"type": "workspaces", "attributes": {"execution-mode": "agent", "agent-pool-id": limited}}},
    )
    assert resp.status_code == 422 and "allowed workspaces" in resp.json()["errors"][0]["detail"]
    owner.ok(
        "PATCH",
        f"/workspaces/{ws_in}",
        {"data": {"type": "workspaces", "attributes": {"execution-mode": "agent", "agent-pool-id": limited}}},
    )
    owner.ok(
        "PATCH",
        f"/workspaces/{ws_out}",
        {"data": {"type": "workspaces", "attributes": {"execution-mode": "agent", "agent-pool-id": general}}},
    )
    # The allow-list cannot drop a workspace that uses the pool.
    resp = owner.call(
        "PATCH",
        f"/api/v2/agent-pools/{limited}",
        {"data": {"type": "agent-pools", "relationships": {"allowed-workspaces": {"data": []}}}},
    )
    assert resp.status_code == 422 and "allowed" in resp.json()["errors"][0]["detail"]

    _, general_session = protocol.register(general_token, capacity=2)
    _, limited_session = protocol.register(limited_token, capacity=2)
    run_in = world.run(ws_in, world.upload(ws_in))
    run_out = world.run(ws_out, world.upload(ws_out))
    claimed_general = protocol.claim(general_session, 2)
    assert [j["run_id"] for j in claimed_general] == [run_out["id"]]  # never the limited pool's run
    claimed_limited = protocol.claim(limited_session, 2)
    assert [j["run_id"] for j in claimed_limited] == [run_in["id"]]

    # A queued job follows its workspace to a new pool: the old pool's agents never get it.
    ws_moving = world.workspace("moving", **{"execution-mode": "agent", "agent-pool-id": general})
    moving = world.run(ws_moving, world.upload(ws_moving))
    owner.ok(
        "PATCH",
        f"/agent-pools/{limited}",
        {
            "data": {
                "type": "agent-pools",
                "relationships": {
                    "allowed-workspaces": {
                        "data": [{"type": "workspaces", "id": ws_in}, {"type": "workspaces", "id": ws_moving}]
                    }
                },
            }
        },
    )
    owner.ok(
        "PATCH", f"/workspaces/{ws_moving}", {"data": {"type": "workspaces", "attributes": {"agent-pool-id": limited}}}
    )
    running_general = [j["id"] for j in claimed_general]
    resp = protocol.call("POST", "/poll", general_session, json={"accept": 1, "running": running_general, "wait": 0})
    assert resp.json()["jobs"] == []
    running_limited = [j["id"] for j in claimed_limited]
    resp = protocol.call("POST", "/poll", limited_session, json={"accept": 1, "running": running_limited, "wait": 0})
    assert [j["run_id"] for j in resp.json()["jobs"]] == [moving["id"]]
