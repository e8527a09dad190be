"""A small client of Outpost's public API, for the quick start, scripts and tests."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx

JSONAPI = "application/vnd.api+json"


def pack(directory: Path) -> bytes:
    """A .tar.gz of a configuration directory, as `terraform` and pytfe upload it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if ".terraform" in path.parts or path.name.endswith(".tfstate"):
                continue
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return buf.getvalue()


TRANSIENT = frozenset({502, 503, 504})


class APIError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        try:
            self.errors = response.json().get("errors", [])
        except ValueError:
            self.errors = []
        super().__init__(f"HTTP {self.status}: {self.errors or response.text[:200]}")


class OutpostAPI:
    def __init__(self, address: str, token: str, *, verify: Any = True, timeout: float = 30.0) -> None:
        self.address = address.rstrip("/")
        self.verify = verify  # also for the upload and log URLs, which get no Authorization header
        self.http = httpx.Client(
            base_url=self.address + "/api/v2",
            verify=verify,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Content-Type": JSONAPI, "Accept": JSONAPI},
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        resp = self.http.request(method, path, json=body, **kwargs)
        if resp.status_code >= 400:
            raise APIError(resp)
        return resp.json() if resp.content else None

    # --- resources -----------------------------------------------------------------------------------

    def create_pool(self, org: str, name: str) -> dict[str, Any]:
        body = {"data": {"type": "agent-pools", "attributes": {"name": name, "organization-scoped": True}}}
        return dict(self.request("POST", f"/organizations/{org}/agent-pools", body)["data"])

    def create_agent_token(self, pool_id: str, description: str) -> tuple[str, str]:
        body = {"data": {"type": "authentication-tokens", "attributes": {"description": description}}}
        data = self.request("POST", f"/agent-pools/{pool_id}/authentication-tokens", body)["data"]
        return data["id"], data["attributes"]["token"]

    def agents(self, pool_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/agent-pools/{pool_id}/agents")["data"])

    def create_workspace(self, org: str, name: str, **attributes: Any) -> dict[str, Any]:
        attrs = {"name": name, **{k.replace("_", "-"): v for k, v in attributes.items()}}
        body = {"data": {"type": "workspaces", "attributes": attrs}}
        return dict(self.request("POST", f"/organizations/{org}/workspaces", body)["data"])

    def update_workspace(self, workspace_id: str, **attributes: Any) -> dict[str, Any]:
        attrs = {k.replace("_", "-"): v for k, v in attributes.items()}
        body = {"data": {"type": "workspaces", "attributes": attrs}}
        return dict(self.request("PATCH", f"/workspaces/{workspace_id}", body)["data"])

    def add_variable(
        self, workspace_id: str, key: str, value: str, category: str = "terraform", sensitive: bool = False
    ) -> dict[str, Any]:
        body = {
            "data": {
                "type": "vars",
                "attributes": {"key": key, "value": value, "category": category, "sensitive": sensitive},
            }
        }
        return dict(self.request("POST", f"/workspaces/{workspace_id}/vars", body)["data"])

    def upload_configuration(self, workspace_id: str, directory: Path, speculative: bool = False) -> str:
        body = {
            "data": {
                "type": "configuration-versions",
                "attributes": {"auto-queue-runs": False, "speculative": speculative},
            }
        }
        cv = self.request("POST", f"/workspaces/{workspace_id}/configuration-versions", body)["data"]
        resp = httpx.put(cv["attributes"]["upload-url"], content=pack(directory), verify=self.verify)
        if resp.status_code >= 300:
            raise APIError(resp)
        return str(cv["id"])

    def create_run(
        self, workspace_id: str, cv_id: str | None = None, message: str = "", **attributes: Any
    ) -> dict[str, Any]:
        rel: dict[str, Any] = {"workspace": {"data": {"type": "workspaces", "id": workspace_id}}}
        if cv_id:
            rel["configuration-version"] = {"data": {"type": "configuration-versions", "id": cv_id}}
        attrs = {"message": message, **{k.replace("_", "-"): v for k, v in attributes.items()}}
        body = {"data": {"type": "runs", "attributes": attrs, "relationships": rel}}
        return dict(self.request("POST", "/runs", body)["data"])

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/runs/{run_id}")["data"])

    def action(self, run_id: str, action: str) -> None:
        self.request("POST", f"/runs/{run_id}/actions/{action}")

    def wait_for_run(self, run_id: str, statuses: set[str], timeout: float = 180.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                run = self.run(run_id)
            except APIError as exc:
                # A proxy in front of several replicas may answer 502 to 504 for a moment while one of them
                # restarts (the request met a connection the old process closed): polling goes on.
                if exc.status not in TRANSIENT or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            if run["attributes"]["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is {run['attributes']['status']}, not {sorted(statuses)}")
            time.sleep(0.1)

    def phase(self, run: dict[str, Any], kind: str) -> dict[str, Any]:
        rel = run["relationships"][kind]["data"]
        return dict(self.request("GET", f"/{'plans' if kind == 'plan' else 'applies'}/{rel['id']}")["data"])

    def read_log(self, run: dict[str, Any], kind: str) -> str:
        """The whole log of a plan or apply, framing removed."""
        url = self.phase(run, kind)["attributes"]["log-read-url"]
        raw = httpx.get(url, timeout=30, verify=self.verify).content
        return raw.strip(b"\x02\x03").decode(errors="replace")

    def current_outputs(self, workspace_id: str) -> dict[str, Any]:
        data = self.request("GET", f"/workspaces/{workspace_id}/current-state-version-outputs")["data"]
        return {o["attributes"]["name"]: o["attributes"]["value"] for o in data}
