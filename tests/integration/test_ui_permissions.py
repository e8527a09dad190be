"""The web UI follows the API's permission table: a member whose team reads one workspace sees that one,
gets no forms for what it may not do, and is refused (403, nothing changed) when it posts them anyway."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from outpost.admin import issue_token
from outpost.api_client import OutpostAPI
from tests.conftest import EXAMPLES
from tests.integration.test_ui_sessions import UI
from tests.support.processes import Server

pytestmark = pytest.mark.integration

JSONAPI = "application/vnd.api+json"


def _member_with_read_access(server: Server, api: OutpostAPI, org: str, workspace_id: str) -> str:
    """A new member of `org` in a team with read access to one workspace; returns an API token of theirs."""
    team = api.request(
        "POST", f"/organizations/{org}/teams", {"data": {"type": "teams", "attributes": {"name": "readers"}}}
    )
    email = f"reader-{uuid.uuid4().hex[:8]}@example.com"
    api.request(
        "POST",
        f"/organizations/{org}/organization-memberships",
        {
            "data": {
                "type": "organization-memberships",
                "attributes": {"email": email},
                "relationships": {"teams": {"data": [{"type": "teams", "id": team["data"]["id"]}]}},
            }
        },
    )
    api.request(
        "POST",
        "/team-workspaces",
        {
            "data": {
                "type": "team-workspaces",
                "attributes": {"access": "read"},
                "relationships": {
                    "team": {"data": {"type": "teams", "id": team["data"]["id"]}},
                    "workspace": {"data": {"type": "workspaces", "id": workspace_id}},
                },
            }
        },
    )
    return asyncio.run(issue_token(server.db_url, email, "ui test"))


def test_a_reader_sees_what_it_may_read_and_changes_nothing(
    server: Server, api: OutpostAPI, org: tuple[str, str]
) -> None:
    name = org[0]
    shared = api.create_workspace(name, "shared")
    api.create_workspace(name, "hidden")
    api.upload_configuration(shared["id"], EXAMPLES / "hello")
    api.add_variable(shared["id"], "region", "eu")
    reader = UI(server.url)
    try:
        token = _member_with_read_access(server, api, name, shared["id"])
        assert reader.sign_in(token=token).status_code == 303

        listed = reader.http.get(f"/app/{name}/workspaces")
        assert listed.status_code == 200
        assert f"/app/{name}/workspaces/shared" in listed.text
        assert f"/app/{name}/workspaces/hidden" not in listed.text
        assert "Create workspace" not in listed.text

        runs = reader.http.get(f"/app/{name}/workspaces/shared")
        assert runs.status_code == 200 and "Queue a run" not in runs.text
        assert "not queue them" in runs.text
        refused = reader.post(
            f"/app/{name}/workspaces/shared/runs", {"source": "latest"}, page=f"/app/{name}/workspaces/shared"
        )
        assert refused.status_code == 403
        assert api.request("GET", f"/workspaces/{shared['id']}/runs")["data"] == []

        variables = reader.http.get(f"/app/{name}/workspaces/shared/variables")
        assert variables.status_code == 200 and "eu" in variables.text and "Add variable" not in variables.text
        refused = reader.post(
            f"/app/{name}/workspaces/shared/variables",
            {"key": "extra", "value": "x", "category": "terraform"},
            page=f"/app/{name}/workspaces/shared/variables",
        )
        assert refused.status_code == 403
        keys = [v["attributes"]["key"] for v in api.request("GET", f"/workspaces/{shared['id']}/vars")["data"]]
        assert keys == ["region"]

        settings = reader.http.get(f"/app/{name}/workspaces/shared/settings")
        assert settings.status_code == 200 and "Save settings" not in settings.text
        refused = reader.post(
            f"/app/{name}/workspaces/shared/settings",
            {"execution_mode": "local", "terraform_version": "1.0.3"},
            page=f"/app/{name}/workspaces/shared/settings",
        )
        assert refused.status_code == 403
        assert api.request("GET", f"/workspaces/{shared['id']}")["data"]["attributes"]["execution-mode"] == "remote"

        assert reader.http.get(f"/app/{name}/workspaces/hidden").status_code == 404
        pools = reader.http.get(f"/app/{name}/pools")
        assert pools.status_code == 200 and "Create pool" not in pools.text
        refused = reader.post(f"/app/{name}/pools", {"name": "sneaky"}, page=f"/app/{name}/pools")
        assert refused.status_code == 403
        assert api.request("GET", f"/organizations/{name}/agent-pools")["data"] == []
    finally:
        reader.close()
