"""The rest of the Terraform Cloud API surface over real HTTP: locks, state pushed under a lock, the run
queue and capacity, discard, agents (filter, delete rules), variables, pagination.

Runs here go to a pool with no agent, so they stay queued: no terraform is needed to check the API.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from outpost.api_client import APIError, OutpostAPI
from tests.conftest import EXAMPLES
from tests.support.processes import Server

pytestmark = pytest.mark.integration

GO_TFE_LOCK = {"data": {"type": "", "attributes": {"reason": "Locked by Terraform"}}}


def _status(exc: pytest.ExceptionInfo[APIError]) -> int:
    (error,) = exc.value.errors
    assert error["status"] == str(exc.value.status) and error["title"] and error["detail"]
    return exc.value.status


def _state(serial: int, lineage: str = "5e1f0c9a-1111-2222-3333-444455556666", value: str = "v") -> bytes:
    return json.dumps(
        {
            "version": 4,
            "terraform_version": "1.0.3",
            "serial": serial,
            "lineage": lineage,
            "outputs": {
                "greeting": {"value": value, "type": "string"},
                "secret": {"value": "hush", "type": "string", "sensitive": True},
            },
            "resources": [],
        }
    ).encode()


def _push(api: OutpostAPI, ws_id: str, raw: bytes, **extra: Any) -> dict[str, Any]:
    attrs = {
        "serial": json.loads(raw)["serial"],
        "md5": hashlib.md5(raw).hexdigest(),
        "lineage": json.loads(raw)["lineage"],
        "state": base64.b64encode(raw).decode(),
        **extra,
    }
    body = {"data": {"type": "state-versions", "attributes": attrs}}
    return dict(api.request("POST", f"/workspaces/{ws_id}/state-versions", body)["data"])


def test_lock_unlock_and_force_unlock_as_go_tfe_and_pytfe_send_them(api: OutpostAPI, org: tuple[str, str]) -> None:
    ws = api.create_workspace(org[0], "locks")
    locked = api.request("POST", f"/workspaces/{ws['id']}/actions/lock", GO_TFE_LOCK)["data"]
    assert locked["attributes"]["locked"] is True
    with pytest.raises(APIError) as exc:
        api.request("POST", f"/workspaces/{ws['id']}/actions/lock", {"reason": "pytfe's flat body"})
    assert _status(exc) == 409  # go-tfe reads 409 as "already locked"
    unlocked = api.request("POST", f"/workspaces/{ws['id']}/actions/unlock")["data"]
    assert unlocked["attributes"]["locked"] is False
    with pytest.raises(APIError) as exc:
        api.request("POST", f"/workspaces/{ws['id']}/actions/unlock")
    assert _status(exc) == 409  # ... and here as "not locked"
    api.request("POST", f"/workspaces/{ws['id']}/actions/lock", {"reason": "pytfe's flat body"})
    forced = api.request("POST", f"/workspaces/{ws['id']}/actions/force-unlock", {"data": {"type": ""}})["data"]
    assert forced["attributes"]["locked"] is False
    with pytest.raises(APIError) as exc:
        api.request("POST", f"/workspaces/{ws['id']}/actions/force-unlock")
    assert _status(exc) == 409


def test_state_pushed_under_a_lock_is_current_with_outputs_and_a_download_url(
    api: OutpostAPI, org: tuple[str, str]
) -> None:
    ws = api.create_workspace(org[0], "pushed", execution_mode="local")
    with pytest.raises(APIError) as exc:
        api.request("GET", f"/workspaces/{ws['id']}/current-state-version")
    assert _status(exc) == 404  # terraform reads 404 as "no state yet"
    with pytest.raises(APIError) as exc:
        _push(api, ws["id"], _state(1))
    assert _status(exc) == 409  # not locked: refused, nothing stored

    api.request("POST", f"/workspaces/{ws['id']}/actions/lock", GO_TFE_LOCK)
    first = _push(api, ws["id"], _state(1, value="one"))
    with pytest.raises(APIError) as exc:
        _push(api, ws["id"], _state(1, value="older"))
    assert _status(exc) == 409  # a serial that is not newer would lose data
    raw = _state(2, value="two")
    with pytest.raises(APIError) as exc:
        _push(api, ws["id"], raw, md5="0" * 32)
    assert _status(exc) == 422
    second = _push(api, ws["id"], raw)
    api.request("POST", f"/workspaces/{ws['id']}/actions/unlock")

    current = api.request("GET", f"/workspaces/{ws['id']}/current-state-version")["data"]
    assert current["id"] == second["id"] and current["attributes"]["serial"] == 2
    assert current["attributes"]["status"] == "finalized" and current["attributes"]["created-at"].endswith("Z")
    # The download URL is a capability: it works with and without the Bearer header, and gives the bytes.
    url = current["attributes"]["hosted-state-download-url"]
    assert httpx.get(url).content == raw
    assert httpx.get(url, headers={"Authorization": f"Bearer {org[1]}"}).content == raw
    assert httpx.get(url[:-4] + "abcd").status_code == 404
    versions = api.request("GET", f"/workspaces/{ws['id']}/state-versions")["data"]
    assert [v["id"] for v in versions] == [second["id"], first["id"]]
    assert api.request("GET", f"/state-versions/{first['id']}")["data"]["attributes"]["serial"] == 1

    outputs = {
        o["attributes"]["name"]: o["attributes"]
        for o in api.request("GET", f"/state-versions/{second['id']}/outputs")["data"]
    }
    assert outputs["greeting"] == {**outputs["greeting"], "value": "two", "type": "string", "sensitive": False}
    assert outputs["secret"]["sensitive"] is True and outputs["secret"]["value"] is None
    assert api.current_outputs(ws["id"]) == {"greeting": "two", "secret": None}


def _pool(api: OutpostAPI, org: str, name: str) -> str:
    return str(api.create_pool(org, name)["id"])


def test_queue_capacity_discard_and_run_list(api: OutpostAPI, org: tuple[str, str]) -> None:
    pool_id = _pool(api, org[0], "idle-pool")  # no agent: runs stay queued
    ws = api.create_workspace(org[0], "queued", execution_mode="agent", agent_pool_id=pool_id)
    cv = api.upload_configuration(ws["id"], EXAMPLES / "hello")
    first = api.create_run(ws["id"], cv, message="first")
    second = api.create_run(ws["id"], cv, message="second")
    assert api.run(first["id"])["attributes"]["status"] == "plan_queued"
    waiting = api.run(second["id"])
    assert waiting["attributes"]["status"] == "pending"  # one active run per workspace
    assert waiting["attributes"]["position-in-queue"] == 1
    assert waiting["attributes"]["actions"] == {
        "is-cancelable": True,
        "is-confirmable": False,
        "is-discardable": True,
        "is-force-cancelable": False,
    }

    queue = api.request("GET", f"/organizations/{org[0]}/runs/queue")
    assert {r["id"] for r in queue["data"]} == {first["id"], second["id"]}
    capacity = api.request("GET", f"/organizations/{org[0]}/capacity")["data"]
    assert capacity["type"] == "organization-capacity"
    assert capacity["attributes"] == {"pending": 2, "running": 0}

    api.action(second["id"], "discard")
    assert api.run(second["id"])["attributes"]["status"] == "discarded"
    with pytest.raises(APIError) as exc:
        api.action(second["id"], "apply")
    assert _status(exc) == 409
    api.action(first["id"], "cancel")  # queued, no agent: canceled at once
    assert api.run(first["id"])["attributes"]["status"] == "canceled"
    assert api.request("GET", f"/organizations/{org[0]}/capacity")["data"]["attributes"]["pending"] == 0

    listed = api.request("GET", f"/workspaces/{ws['id']}/runs", params={"page[size]": 1, "include": ""})
    assert [r["id"] for r in listed["data"]] == [second["id"]]  # newest first
    assert listed["meta"]["pagination"]["total-count"] == 2 and listed["meta"]["pagination"]["next-page"] == 2


def test_workspace_list_paginates_and_searches(api: OutpostAPI, org: tuple[str, str]) -> None:
    for i in range(5):
        api.create_workspace(org[0], f"page-{i}")
    api.create_workspace(org[0], "other")
    first = api.request("GET", f"/organizations/{org[0]}/workspaces", params={"page[size]": 2, "include": ""})
    assert len(first["data"]) == 2
    assert first["meta"]["pagination"] == {
        "current-page": 1,
        "page-size": 2,
        "prev-page": None,
        "next-page": 2,
        "total-pages": 3,
        "total-count": 6,
    }
    names = set()
    for number in (1, 2, 3):
        page = api.request(
            "GET", f"/organizations/{org[0]}/workspaces", params={"page[size]": 2, "page[number]": number}
        )
        names |= {w["attributes"]["name"] for w in page["data"]}
    assert names == {f"page-{i}" for i in range(5)} | {"other"}
    found = api.request("GET", f"/organizations/{org[0]}/workspaces", params={"search[name]": "page-"})["data"]
    assert sorted(w["attributes"]["name"] for w in found) == [f"page-{i}" for i in range(5)]


def test_sensitive_variables_are_write_only(api: OutpostAPI, org: tuple[str, str]) -> None:
    ws = api.create_workspace(org[0], "vars")
    plain = api.add_variable(ws["id"], "region", "eu")
    secret = api.add_variable(ws["id"], "AWS_SECRET", "s3cr3t", category="env", sensitive=True)
    assert plain["attributes"]["value"] == "eu"
    assert secret["attributes"]["value"] is None and secret["attributes"]["sensitive"] is True
    listed = {
        v["attributes"]["key"]: v["attributes"] for v in api.request("GET", f"/workspaces/{ws['id']}/vars")["data"]
    }
    assert listed["AWS_SECRET"]["value"] is None and listed["region"]["value"] == "eu"
    assert "s3cr3t" not in json.dumps(api.request("GET", f"/workspaces/{ws['id']}/vars"))
    body = {"data": {"type": "vars", "attributes": {"value": "west"}}}
    assert (
        api.request("PATCH", f"/workspaces/{ws['id']}/vars/{plain['id']}", body)["data"]["attributes"]["value"]
        == "west"
    )
    with pytest.raises(APIError) as exc:
        api.add_variable(ws["id"], "region", "duplicate")
    assert _status(exc) in (409, 422)
    api.request("DELETE", f"/workspaces/{ws['id']}/vars/{plain['id']}")
    keys = [v["attributes"]["key"] for v in api.request("GET", f"/workspaces/{ws['id']}/vars")["data"]]
    assert keys == ["AWS_SECRET"]


def _register(server: Server, pool_token: str, name: str) -> str:
    resp = httpx.post(
        f"{server.url}/api/agent/v1/register",
        headers={"Authorization": f"Bearer {pool_token}"},
        json={"name": name, "protocol": 1, "capacity": 1},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session_token"])


def test_agents_filter_by_last_ping_and_delete_only_when_gone(
    server: Server, api: OutpostAPI, org: tuple[str, str]
) -> None:
    pool_id = _pool(api, org[0], "agents")
    _, token = api.create_agent_token(pool_id, "for agents")
    before = datetime.now(UTC) - timedelta(seconds=5)
    session = _register(server, token, "short-lived")
    _register(server, token, "stays")
    agents = {a["attributes"]["name"]: a for a in api.agents(pool_id)}
    assert {a["attributes"]["status"] for a in agents.values()} == {"idle"}
    assert all(a["attributes"]["last-ping-at"].endswith("Z") for a in agents.values())
    assert api.request("GET", f"/agent-pools/{pool_id}")["data"]["attributes"]["agent-count"] == 2

    since = {"filter[last-ping-since]": before.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert len(api.request("GET", f"/agent-pools/{pool_id}/agents", params=since)["data"]) == 2
    future = {"filter[last-ping-since]": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    assert api.request("GET", f"/agent-pools/{pool_id}/agents", params=future)["data"] == []

    leaving = agents["short-lived"]["id"]
    with pytest.raises(APIError) as exc:
        api.request("DELETE", f"/agents/{leaving}")
    assert _status(exc) == 412  # idle agents cannot be deleted
    deregistered = httpx.post(f"{server.url}/api/agent/v1/deregister", headers={"Authorization": f"Bearer {session}"})
    assert deregistered.status_code == 204
    assert api.request("GET", f"/agents/{leaving}")["data"]["attributes"]["status"] == "exited"
    assert api.request("GET", f"/agent-pools/{pool_id}")["data"]["attributes"]["agent-count"] == 1
    api.request("DELETE", f"/agents/{leaving}")
    with pytest.raises(APIError) as exc:
        api.request("GET", f"/agents/{leaving}")
    assert _status(exc) == 404


def test_agent_protocol_refusals_are_json_api_and_its_routes_documented(server: Server) -> None:
    """The agent protocol is served by plain Starlette routes (outpost.server.agent_api.plain): its
    refusals still read like every other endpoint's, and the OpenAPI document still lists it."""
    agent_api = f"{server.url}/api/agent/v1"
    for response, status in (
        (httpx.get(f"{agent_api}/no-such-call"), 404),
        (httpx.get(f"{agent_api}/heartbeat"), 405),
        (httpx.post(f"{agent_api}/heartbeat"), 401),
        (httpx.put(f"{agent_api}/jobs/job-nope/logs?offset=x", content=b"x"), 400),
    ):
        assert response.status_code == status, response.text
        (error,) = response.json()["errors"]
        assert error["status"] == str(status) and error["title"] and error["detail"]
    paths = httpx.get(f"{server.url}/api/openapi.json").json()["paths"]
    assert {"/api/agent/v1/poll", "/api/agent/v1/jobs/{job_id}/logs"} <= set(paths)
