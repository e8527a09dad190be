"""Hostile input at the server, over real HTTP: archives that try to leave the run's directory (refused
at upload with 422, nothing stored), oversized bodies (413, refused by their declared length before they
are read), and JSON:API documents of the wrong shape (clear 4xx, nothing changed)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from outpost.api_client import OutpostAPI
from tests.support import databases
from tests.support.archives import gzip_bomb, hostile
from tests.support.processes import Server

pytestmark = pytest.mark.integration

HOSTILE = hostile()
JSONAPI = {"Content-Type": "application/vnd.api+json"}


def _blobs(server: Server) -> int:
    ((count,),) = databases.query(server.db_url, "SELECT count(*) FROM blobs")
    return int(str(count))


def _new_cv(api: OutpostAPI, workspace_id: str) -> dict[str, Any]:
    body = {"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": True}}}
    return dict(api.request("POST", f"/workspaces/{workspace_id}/configuration-versions", body)["data"])


def _refused(api: OutpostAPI, server: Server, workspace_id: str, data: bytes) -> dict[str, Any]:
    cv = _new_cv(api, workspace_id)
    before = _blobs(server)
    resp = httpx.put(cv["attributes"]["upload-url"], content=data, timeout=120)
    assert resp.status_code == 422, resp.text
    (error,) = resp.json()["errors"]
    assert error["title"] == "invalid configuration archive"
    after = api.request("GET", f"/configuration-versions/{cv['id']}")["data"]["attributes"]
    assert after["status"] == "pending"  # still waiting for a good upload
    assert _blobs(server) == before  # nothing stored
    assert api.request("GET", f"/workspaces/{workspace_id}/runs")["data"] == []  # nothing queued
    return dict(error)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archive_is_refused_at_upload(server: Server, api: OutpostAPI, org: tuple[str, str], kind: str) -> None:
    ws = api.create_workspace(org[0], "hostile")["id"]
    detail = _refused(api, server, ws, HOSTILE[kind])["detail"]
    assert ("outside" in detail) or ("special file" in detail), detail


def test_gzip_bomb_is_refused_at_upload(server: Server, api: OutpostAPI, org: tuple[str, str]) -> None:
    bomb = gzip_bomb(1152 * 1024 * 1024)  # 1.125 GiB unpacked, over the 1 GiB limit
    assert len(bomb) < 2 * 1024 * 1024
    ws = api.create_workspace(org[0], "bomb")["id"]
    assert "unpacks to more than" in _refused(api, server, ws, bomb)["detail"]


def _raw_request(server: Server, head: str) -> bytes:
    """A request whose headers promise a body that never comes: the limit must answer from the headers."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_oversized_bodies_are_refused_by_their_length(server: Server, api: OutpostAPI, org: tuple[str, str]) -> None:
    cv = _new_cv(api, api.create_workspace(org[0], "big")["id"])
    path = cv["attributes"]["upload-url"].removeprefix(server.url)
    answer = _raw_request(server, f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"payload too large" in answer
    answer = _raw_request(
        server,
        f"POST /api/v2/organizations/{org[0]}/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {org[1]}\r\n"
        f"Content-Type: application/vnd.api+json\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_oversized_streamed_body_is_cut_off(server: Server, org: tuple[str, str]) -> None:
    def chunks() -> Any:
        for _ in range(40):
            yield b" " * 65536  # 2.5 MiB of whitespace, sent without a Content-Length

    resp = httpx.post(
        f"{server.url}/api/v2/organizations/{org[0]}/workspaces",
        content=chunks(),
        headers={**JSONAPI, "Authorization": f"Bearer {org[1]}"},
    )
    assert resp.status_code == 413
    assert resp.json()["errors"][0]["status"] == "413"


@pytest.mark.parametrize(
    ("body", "status", "title"),
    [
        ({"data": {"type": "runs", "attributes": {"name": "x"}}}, 409, "wrong type"),
        ({"data": {"type": "workspaces", "attributes": ["name", "x"]}}, 422, "invalid document"),
        ({"data": "workspaces"}, 422, "invalid document"),
        ({"data": {"type": 7, "attributes": {"name": "x"}}}, 422, "invalid document"),
        ({"data": {"type": "workspaces", "attributes": {"name": "x", "auto-apply": "yes"}}}, 422, None),
        ([1, 2], 400, "malformed JSON"),
    ],
)
def test_jsonapi_documents_are_validated(
    api: OutpostAPI, org: tuple[str, str], server: Server, body: Any, status: int, title: str | None
) -> None:
    resp = httpx.post(
        f"{server.url}/api/v2/organizations/{org[0]}/workspaces",
        json=body,
        headers={**JSONAPI, "Authorization": f"Bearer {org[1]}"},
    )
    assert resp.status_code == status, resp.text
    (error,) = resp.json()["errors"]
    assert error["detail"] and (title is None or error["title"] == title)
    assert api.request("GET", f"/organizations/{org[0]}/workspaces")["data"] == []


def test_variable_keys_and_values_are_validated(api: OutpostAPI, org: tuple[str, str]) -> None:
    ws = api.create_workspace(org[0], "vars")["id"]
    for key, value, category in [
        ("a\nb = 1", "x", "terraform"),  # would inject a line into the tfvars file
        ("PATH=x", "y", "env"),
        ("x", "nul\x00byte", "env"),
        ("", "x", "terraform"),
    ]:
        body = {"data": {"type": "vars", "attributes": {"key": key, "value": value, "category": category}}}
        resp = api.http.post(f"/workspaces/{ws}/vars", json=body)
        assert resp.status_code == 422, (key, resp.text)
    assert api.request("GET", f"/workspaces/{ws}/vars")["data"] == []
