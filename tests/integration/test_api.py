"""The public API over real HTTP against a running server: shapes, rules and clear errors."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import tarfile
import time
from typing import Any

import httpx
import pytest

from outpost.admin import bootstrap
from outpost.api_client import APIError, OutpostAPI
from tests.conftest import EXAMPLES
from tests.support.processes import Server

pytestmark = pytest.mark.integration

JSONAPI = {"Content-Type": "application/vnd.api+json"}


def _error(exc: pytest.ExceptionInfo[APIError], status: int) -> dict[str, Any]:
    assert exc.value.status == status, exc.value.errors
    (error,) = exc.value.errors
    assert error["status"] == str(status) and error["title"] and error["detail"]
    return dict(error)


def _snapshot(api: OutpostAPI, org: str) -> Any:
    return api.request("GET", f"/organizations/{org}/workspaces")["data"]


def test_discovery_and_ping(server: Server) -> None:
    doc = httpx.get(f"{server.url}/.well-known/terraform.json")
    assert doc.headers["content-type"] == "application/json"
    assert doc.json()["tfe.v2.1"] == "/api/v2/"
    ping = httpx.get(f"{server.url}/api/v2/ping")
    assert ping.status_code == 204 and float(ping.headers["TFP-API-Version"]) >= 2.4


def test_an_idle_connection_outlives_the_clients_and_proxies_keep_alive(server: Server) -> None:
    """A connection idle for longer than httpx keeps one (5 s) is still open: were the server to close it
    at the same moment a client reuses it, the client would get a read error (a 502 through nginx)."""
    url = httpx.URL(server.url)
    request = f"GET /api/v2/ping HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode()
    with socket.create_connection((url.host, url.port), timeout=10) as conn:
        for pause in (6, 0):
            conn.sendall(request)
            answer = conn.recv(4096)
            assert answer.startswith(b"HTTP/1.1 204"), answer
            time.sleep(pause)


def test_the_agent_client_keeps_its_connection_between_heartbeats(
    server: Server, api: OutpostAPI, org: tuple[str, str]
) -> None:
    """The agent's client keeps idle connections longer than the heartbeat interval: a heartbeat after a
    pause longer than httpx's default keep-alive (5 s) goes over the same connection, not a new one.
    Counted by a TCP relay between the client and the server."""
    from outpost.agent.client import Client

    pool = api.create_pool(org[0], "keep-alive")
    _, pool_token = api.create_agent_token(pool["id"], "keep-alive")
    target = httpx.URL(server.url)

    async def scenario() -> int:
        relays: list[asyncio.Task[Any]] = []

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()
                with contextlib.suppress(OSError):
                    await dst.wait_closed()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(target.host, target.port)
            relays.append(asyncio.current_task())  # type: ignore[arg-type]
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer), return_exceptions=True)

        relay_server = await asyncio.start_server(relay, "127.0.0.1", 0)
        port = relay_server.sockets[0].getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}")
        try:
            await client.register(pool_token, "keeps-alive", 1)
            await client.heartbeat([])
            await asyncio.sleep(6)
            await client.heartbeat([])
            await client.deregister()
        finally:
            await client.close()
            relay_server.close()
            await relay_server.wait_closed()
            await asyncio.gather(*relays, return_exceptions=True)
        return len(relays)

    assert asyncio.run(scenario()) == 1


def test_workspace_shape_for_real_clients(api: OutpostAPI, org: tuple[str, str]) -> None:
    ws = api.create_workspace(org[0], "shape", **{"vcs-repo": {}, "setting-overwrites": {}, "type": "workspaces"})
    attrs = ws["attributes"]
    assert attrs["vcs-repo"] is None and attrs["operations"] is True
    assert attrs["created-at"].endswith("Z") and attrs["terraform-version"] == "1.0.3"
    assert attrs["trigger-prefixes"] == [] and attrs["tag-names"] == []
    assert {"can-queue-run", "can-update", "can-queue-apply"} <= set(attrs["permissions"])
    by_name = api.request("GET", f"/organizations/{org[0]}/workspaces/shape")["data"]
    assert by_name["id"] == ws["id"]


def test_deleting_a_linked_pool_is_refused_naming_the_workspaces(api: OutpostAPI, org: tuple[str, str]) -> None:
    pool = api.create_pool(org[0], "linked")
    api.create_workspace(org[0], "uses-pool", execution_mode="agent", agent_pool_id=pool["id"])
    with pytest.raises(APIError) as exc:
        api.request("DELETE", f"/agent-pools/{pool['id']}")
    assert "uses-pool" in _error(exc, 409)["detail"]
    assert api.request("GET", f"/agent-pools/{pool['id']}")["data"]["attributes"]["name"] == "linked"


def test_agent_mode_needs_terraform_012(api: OutpostAPI, org: tuple[str, str]) -> None:
    pool = api.create_pool(org[0], "p")
    with pytest.raises(APIError) as exc:
        api.create_workspace(
            org[0], "old", execution_mode="agent", agent_pool_id=pool["id"], terraform_version="0.11.11"
        )
    assert "0.11.11" in _error(exc, 422)["detail"]
    assert _snapshot(api, org[0]) == []
    ws = api.create_workspace(org[0], "old", execution_mode="local", terraform_version="0.11.11")
    with pytest.raises(APIError) as exc:
        api.update_workspace(ws["id"], execution_mode="agent", agent_pool_id=pool["id"])
    _error(exc, 422)
    assert api.request("GET", f"/workspaces/{ws['id']}")["data"]["attributes"]["execution-mode"] == "local"


def test_malformed_json_is_a_clear_400(server: Server, org: tuple[str, str]) -> None:
    resp = httpx.post(
        f"{server.url}/api/v2/organizations/{org[0]}/workspaces",
        content=b'{"data": {',
        headers={**JSONAPI, "Authorization": f"Bearer {org[1]}"},
    )
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["title"] == "malformed JSON"


def test_unknown_workspace_is_404(api: OutpostAPI) -> None:
    with pytest.raises(APIError) as exc:
        api.request("GET", "/workspaces/ws-doesnotexist")
    assert "ws-doesnotexist" in _error(exc, 404)["detail"]
    with pytest.raises(APIError) as exc:
        api.create_run("ws-doesnotexist")
    _error(exc, 404)


def test_upload_that_is_not_gzip_changes_nothing(api: OutpostAPI, org: tuple[str, str]) -> None:
    ws = api.create_workspace(org[0], "up")
    cv = api.request(
        "POST",
        f"/workspaces/{ws['id']}/configuration-versions",
        {"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}},
    )["data"]
    url = cv["attributes"]["upload-url"]
    resp = httpx.put(url, content=b"this is not a tarball")
    assert resp.status_code == 422
    assert "not gzip" in resp.json()["errors"][0]["detail"]
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../escape.tf")
        tar.addfile(info, io.BytesIO(b""))
    assert httpx.put(url, content=evil.getvalue()).status_code == 422
    after = api.request("GET", f"/configuration-versions/{cv['id']}")["data"]["attributes"]
    assert after["status"] == "pending"
    with pytest.raises(APIError) as exc:
        api.create_run(ws["id"], cv["id"])
    _error(exc, 422)
    assert api.request("GET", f"/workspaces/{ws['id']}/runs")["data"] == []
    # A forged capability is not an upload URL at all.
    assert httpx.put(url[:-4] + "0000", content=b"x").status_code == 404


def test_other_organizations_are_invisible(server: Server, api: OutpostAPI, org: tuple[str, str]) -> None:
    ws = api.create_workspace(org[0], "mine")
    pool = api.create_pool(org[0], "mine")
    other_token = asyncio.run(bootstrap(server.db_url, f"{org[0]}-other", "someone-else@example.com"))
    other = OutpostAPI(server.url, other_token)
    try:
        for path in (
            f"/workspaces/{ws['id']}",
            f"/agent-pools/{pool['id']}",
            f"/organizations/{org[0]}",
            f"/organizations/{org[0]}/workspaces/mine",
            f"/agent-pools/{pool['id']}/agents",
        ):
            with pytest.raises(APIError) as exc:
                other.request("GET", path)
            _error(exc, 404)
    finally:
        other.close()


def test_credentials_are_checked(server: Server, api: OutpostAPI, org: tuple[str, str]) -> None:
    pool = api.create_pool(org[0], "tokens")
    _, pool_token = api.create_agent_token(pool["id"], "agent")
    for token in (None, "opu_not-a-real-token", pool_token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = httpx.get(f"{server.url}/api/v2/organizations/{org[0]}/workspaces", headers=headers)
        assert resp.status_code == 401, token
    tokens = api.request("GET", f"/agent-pools/{pool['id']}/authentication-tokens")["data"]
    assert [t["attributes"]["token"] for t in tokens] == [None]  # the secret is shown once, at creation
    assert tokens[0]["attributes"]["description"] == "agent"


def test_log_protocol_framing(api: OutpostAPI, org: tuple[str, str]) -> None:
    """go-tfe's LogReader: STX first, ETX once complete, the query string replaced by limit/offset."""
    ws = api.create_workspace(org[0], "logs", execution_mode="remote")
    cv = api.upload_configuration(ws["id"], EXAMPLES / "hello", speculative=True)
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned_and_finished", "errored"})
    assert run["attributes"]["status"] == "planned_and_finished"
    url = api.phase(run, "plan")["attributes"]["log-read-url"]
    whole = httpx.get(url).content
    assert whole[:1] == b"\x02" and whole[-1:] == b"\x03"
    pieces = b""
    offset = 0
    while True:
        chunk = httpx.get(url, params={"limit": 7, "offset": offset}).content
        if not chunk:
            break
        assert len(chunk) <= 7
        pieces += chunk
        offset += len(chunk)
    assert pieces == whole
    assert b"1 to add" in whole
    assert httpx.get(url + "x").status_code == 404
