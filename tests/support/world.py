"""An organization populated for authorization tests, through the real API over HTTP.

Owner, members (in a team with read access, in one with write access, in no team), the owner of another
organization, an agent pool with a token and a registered agent (so an agent session), two runs whose
plan jobs that agent claimed (so job credentials), a configuration version, a state version, a variable.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from outpost.admin import bootstrap, issue_token

JSONAPI = {"Content-Type": "application/vnd.api+json"}


def archive(files: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (files or {"main.tf": 'resource "null_resource" "x" {}\n'}).items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Client:
    """A user (or no one, or an agent credential) speaking to /api/v2."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = dict(JSONAPI)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=url, headers=headers, timeout=30)
        self.token = token

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, json=body, **kw)

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        resp = self.call(method, "/api/v2" + path, body, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        return resp.json() if resp.content else None


class AgentProtocol:
    """Just enough of the agent protocol to hold a session and job credentials."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url + "/api/agent/v1", timeout=30)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, path, headers=headers, **kw)

    def register(self, pool_token: str, capacity: int = 2) -> tuple[str, str]:
        resp = self.call("POST", "/register", pool_token, json={"name": "test", "capacity": capacity})
        assert resp.status_code == 201, resp.text
        return resp.json()["agent_id"], resp.json()["session_token"]

    def claim(self, session: str, count: int) -> list[dict[str, str]]:
        """Claim `count` queued jobs, one poll each (a poll hands out one); listing the jobs already held,
        or the server would deliver them again with new credentials."""
        jobs: list[dict[str, str]] = []
        for _ in range(count):
            body = {"accept": count - len(jobs), "running": [j["id"] for j in jobs], "wait": 0}
            resp = self.call("POST", "/poll", session, json=body)
            assert resp.status_code == 200, resp.text
            jobs += resp.json()["jobs"]
        return jobs


@dataclass
class World:
    url: str
    db_url: str
    org: str = ""
    other_org: str = ""
    owner: Client | None = None
    users: dict[str, Client] = field(default_factory=dict)  # role -> client
    user_ids: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # path parameter -> id
    credentials: dict[str, str] = field(default_factory=dict)  # agent credential kind -> secret
    teams: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> claimed job

    def close(self) -> None:
        for client in self.users.values():
            client.close()

    # --- building ---------------------------------------------------------------------------------

    def member(self, role: str, teams: list[str]) -> Client:
        assert self.owner is not None
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        body = {
            "data": {
                "type": "organization-memberships",
                "attributes": {"email": email},
                "relationships": {"teams": {"data": [{"type": "teams", "id": t} for t in teams]}},
            }
        }
        membership = self.owner.ok("POST", f"/organizations/{self.org}/organization-memberships", body)["data"]
        token = asyncio.run(issue_token(self.db_url, email, "test"))
        client = Client(self.url, token)
        self.users[role] = client
        self.user_ids[role] = membership["relationships"]["user"]["data"]["id"]
        self.ids.setdefault(f"membership:{role}", membership["id"])
        return client

    def team(self, name: str, **org_access: bool) -> str:
        assert self.owner is not None
        attrs: dict[str, Any] = {"name": name}
        if org_access:
            attrs["organization-access"] = {k.replace("_", "-"): v for k, v in org_access.items()}
        team = self.owner.ok(
            "POST", f"/organizations/{self.org}/teams", {"data": {"type": "teams", "attributes": attrs}}
        )
        self.teams[name] = team["data"]["id"]
        return str(team["data"]["id"])

    def grant(self, team_id: str, workspace_id: str, access: str) -> str:
        assert self.owner is not None
        body = {
            "data": {
                "type": "team-workspaces",
                "attributes": {"access": access},
                "relationships": {
                    "team": {"data": {"type": "teams", "id": team_id}},
                    "workspace": {"data": {"type": "workspaces", "id": workspace_id}},
                },
            }
        }
        return str(self.owner.ok("POST", "/team-workspaces", body)["data"]["id"])

    def pool(self, name: str) -> tuple[str, dict[str, Any]]:
        """An agent pool and a token of it: (pool id, the token as created, its secret in attributes)."""
        assert self.owner is not None
        pool = self.owner.ok(
            "POST",
            f"/organizations/{self.org}/agent-pools",
            {"data": {"type": "agent-pools", "attributes": {"name": name}}},
        )["data"]["id"]
        token = self.owner.ok(
            "POST",
            f"/agent-pools/{pool}/authentication-tokens",
            {"data": {"type": "authentication-tokens", "attributes": {"description": name}}},
        )["data"]
        return str(pool), dict(token)

    def workspace(self, name: str, **attrs: Any) -> str:
        assert self.owner is not None
        body = {"data": {"type": "workspaces", "attributes": {"name": name, **attrs}}}
        return str(self.owner.ok("POST", f"/organizations/{self.org}/workspaces", body)["data"]["id"])

    def upload(self, workspace_id: str, files: dict[str, str] | None = None) -> str:
        assert self.owner is not None
        body = {"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}}
        cv = self.owner.ok("POST", f"/workspaces/{workspace_id}/configuration-versions", body)["data"]
        resp = httpx.put(cv["attributes"]["upload-url"], content=archive(files))
        assert resp.status_code == 200, resp.text
        return str(cv["id"])

    def run(self, workspace_id: str, cv_id: str) -> dict[str, Any]:
        assert self.owner is not None
        body = {
            "data": {
                "type": "runs",
                "relationships": {
                    "workspace": {"data": {"type": "workspaces", "id": workspace_id}},
                    "configuration-version": {"data": {"type": "configuration-versions", "id": cv_id}},
                },
            }
        }
        return dict(self.owner.ok("POST", "/runs", body)["data"])

    def push_state(self, workspace_id: str) -> str:
        import base64
        import json

        assert self.owner is not None
        raw = json.dumps(
            {
                "version": 4,
                "terraform_version": "1.0.3",
                "serial": 1,
                "lineage": "l1",
                "outputs": {"o": {"value": "v", "type": "string"}},
                "resources": [],
            }
        ).encode()
        self.owner.ok("POST", f"/workspaces/{workspace_id}/actions/lock", {"reason": "test"})
        sv = self.owner.ok(
            "POST",
            f"/workspaces/{workspace_id}/state-versions",
            {"data": {"type": "state-versions", "attributes": {"serial": 1, "state": base64.b64encode(raw).decode()}}},
        )["data"]
        self.owner.ok("POST", f"/workspaces/{workspace_id}/actions/unlock")
        return str(sv["id"])


def build(url: str, db_url: str) -> World:
    world = World(url=url, db_url=db_url)
    try:
        return _populate(world)
    except BaseException:
        world.close()
        raise


def _populate(world: World) -> World:
    url, db_url = world.url, world.db_url
    suffix = uuid.uuid4().hex[:8]
    world.org = f"authz-{suffix}"
    world.owner = Client(url, asyncio.run(bootstrap(db_url, world.org, f"owner-{suffix}@example.com")))
    world.users["owner"] = world.owner
    world.user_ids["owner"] = world.owner.ok("GET", "/account/details")["data"]["id"]
    world.other_org = f"other-{suffix}"
    world.users["other-org"] = Client(
        url, asyncio.run(bootstrap(db_url, world.other_org, f"other-{suffix}@example.com"))
    )
    world.user_ids["other-org"] = world.users["other-org"].ok("GET", "/account/details")["data"]["id"]
    owner = world.owner

    pool, token = world.pool("p")
    world.ids.update(pool_id=pool, token_id=token["id"])
    world.credentials["pool token"] = token["attributes"]["token"]

    ws = world.workspace("target", **{"execution-mode": "agent", "agent-pool-id": pool})
    ws2 = world.workspace("elsewhere", **{"execution-mode": "agent", "agent-pool-id": pool})
    world.ids.update(workspace_id=ws, org=world.org, name="target")
    world.ids["sv_id"] = world.push_state(ws)
    world.ids["cv_id"] = world.upload(ws)
    run = world.run(ws, world.ids["cv_id"])
    other_run = world.run(ws2, world.upload(ws2))
    world.ids.update(
        run_id=run["id"],
        plan_id=run["relationships"]["plan"]["data"]["id"],
        apply_id=run["relationships"]["apply"]["data"]["id"],
    )
    variable = owner.ok(
        "POST",
        f"/workspaces/{ws}/vars",
        {"data": {"type": "vars", "attributes": {"key": "v", "value": "1", "category": "terraform"}}},
    )["data"]
    world.ids["var_id"] = variable["id"]

    protocol = AgentProtocol(url)
    try:
        agent_id, session = protocol.register(world.credentials["pool token"], capacity=2)
        world.ids["agent_id"] = agent_id
        world.credentials["agent session"] = session
        for job in protocol.claim(session, 2):
            world.jobs[job["run_id"]] = job
        assert set(world.jobs) == {run["id"], other_run["id"]}, world.jobs
        mine = world.jobs[run["id"]]
        assert protocol.call("POST", f"/jobs/{mine['id']}/start", mine["token"]).status_code == 204
        resp = protocol.call("PUT", f"/jobs/{mine['id']}/plan-json", mine["token"], content=b'{"resource_changes": []}')
        assert resp.status_code == 204, resp.text
        world.credentials["job credential of another run"] = world.jobs[other_run["id"]]["token"]
    finally:
        protocol.close()

    readers = world.team("readers")
    writers = world.team("writers")
    world.team("no-grants")
    world.team("no-members")
    world.ids["team_id"] = readers
    world.ids["access_id"] = world.grant(readers, ws, "read")
    world.grant(writers, ws, "write")
    world.member("member, no team access", [])
    world.member("member, read access", [readers])
    world.member("member, write access", [writers])
    world.ids["membership_id"] = world.ids["membership:member, read access"]
    return world
