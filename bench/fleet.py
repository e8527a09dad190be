"""Many simulated agents in one process, each speaking the real agent protocol through
`outpost.agent.client.Client` over real HTTP: register, heartbeat (server-set interval, with jitter),
long-poll, start and finish jobs. No terraform: they measure the control plane, not terraform."""

from __future__ import annotations

import asyncio
import io
import random
import ssl
import tarfile
import time
from typing import Any

import httpx

from outpost.agent.client import LIMITS, Backoff, Client

JSONAPI = "application/vnd.api+json"


class API:
    """The few public API calls the benchmarks make, async, in the same event loop as the agents."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(
            base_url=f"{url}/api/v2",
            headers={"Authorization": f"Bearer {token}", "Content-Type": JSONAPI},
            timeout=60,
            limits=httpx.Limits(max_connections=64),
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.http.post(path, json=body)
        resp.raise_for_status()
        return dict(resp.json()["data"])

    async def pool_and_token(self, org: str, name: str) -> tuple[str, str]:
        pool = await self.post(
            f"/organizations/{org}/agent-pools", {"data": {"type": "agent-pools", "attributes": {"name": name}}}
        )
        token = await self.post(
            f"/agent-pools/{pool['id']}/authentication-tokens",
            {"data": {"type": "authentication-tokens", "attributes": {"description": name}}},
        )
        return str(pool["id"]), str(token["attributes"]["token"])

    async def workspace(self, org: str, name: str, pool_id: str, **attributes: Any) -> str:
        attrs = {"name": name, "execution-mode": "agent", "agent-pool-id": pool_id, **attributes}
        ws = await self.post(f"/organizations/{org}/workspaces", {"data": {"type": "workspaces", "attributes": attrs}})
        return str(ws["id"])

    async def configuration(self, workspace_id: str, files: dict[str, str]) -> str:
        cv = await self.post(
            f"/workspaces/{workspace_id}/configuration-versions",
            {"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}},
        )
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        resp = await self.http.put(cv["attributes"]["upload-url"], content=buf.getvalue())
        resp.raise_for_status()
        return str(cv["id"])

    async def run(self, workspace_id: str, cv_id: str, *, plan_only: bool = True, auto_apply: bool = False) -> str:
        body = {
            "data": {
                "type": "runs",
                "attributes": {"plan-only": plan_only, "auto-apply": auto_apply},
                "relationships": {
                    "workspace": {"data": {"type": "workspaces", "id": workspace_id}},
                    "configuration-version": {"data": {"type": "configuration-versions", "id": cv_id}},
                },
            }
        }
        return str((await self.post("/runs", body))["id"])

    async def get(self, path: str) -> dict[str, Any]:
        resp = await self.http.get(path)
        resp.raise_for_status()
        return dict(resp.json())


class Fleet:
    """Simulated agents of one pool. `arrival(run_id)` is a future set when an agent receives the run's job."""

    def __init__(self, url: str, pool_token: str, *, heartbeat_interval: float | None = None) -> None:
        self.url = url
        self.pool_token = pool_token
        self.heartbeat_interval = heartbeat_interval  # None: the interval the server sets
        self.clients: list[Client] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.polling = 0
        self.errors: list[str] = []
        self.received: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self._arrivals: dict[str, asyncio.Future[float]] = {}
        # One TLS context for all (none is used over http://, but httpx would build one per client).
        self._ssl = ssl.create_default_context()

    def arrival(self, run_id: str) -> asyncio.Future[float]:
        future = self._arrivals.get(run_id)
        if future is None:
            future = self._arrivals[run_id] = asyncio.get_running_loop().create_future()
            if run_id in self.received:
                future.set_result(self.received[run_id])
        return future

    def _arrived(self, run_id: str, at: float) -> None:
        self.received[run_id] = at
        future = self._arrivals.get(run_id)
        if future is not None and not future.done():
            future.set_result(at)

    async def connect(self, count: int, *, concurrency: int = 32, settle: bool = True) -> None:
        """Register `count` agents (at most `concurrency` registrations at once) and, with `settle`, wait
        until all poll (not when jobs are already queued: then they go straight to work)."""
        gate = asyncio.Semaphore(concurrency)
        first = len(self.clients)

        async def one(i: int) -> None:
            async with gate:
                client = Client(
                    self.url,
                    backoff=Backoff(base=0.2, cap=5.0),
                    transport=httpx.AsyncHTTPTransport(verify=self._ssl, retries=0, limits=LIMITS),
                )
                self.clients.append(client)
                registration = await client.register(self.pool_token, f"sim-{i}", 1)
                interval = self.heartbeat_interval or registration.heartbeat_interval
                self.tasks.append(asyncio.create_task(self._live(client, interval, registration.long_poll_timeout)))

        await asyncio.gather(*(one(first + i) for i in range(count)))
        if not settle:
            return
        deadline = time.monotonic() + 60 + count / 100
        while self.polling < len(self.clients):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.polling} of {len(self.clients)} agents are polling")
            await asyncio.sleep(0.05)

    async def _live(self, client: Client, interval: float, wait: float) -> None:
        beat = asyncio.create_task(self._heartbeats(client, interval))
        try:
            await self._poll(client, wait)
        finally:
            beat.cancel()

    async def _heartbeats(self, client: Client, interval: float) -> None:
        await asyncio.sleep(interval * random.random())  # a fleet started at once still beats spread out
        while True:
            try:
                await client.heartbeat([])
            except Exception as exc:  # counted, and the agent carries on as a real one would retry
                self.errors.append(f"heartbeat: {type(exc).__name__}: {exc}")
            await asyncio.sleep(interval * random.uniform(0.8, 1.0))

    async def _poll(self, client: Client, wait: float) -> None:
        while True:
            self.polling += 1
            try:
                answer = await client.poll(1, [], {}, wait)
            except Exception as exc:
                self.errors.append(f"poll: {type(exc).__name__}: {exc}")
                await asyncio.sleep(1)
                continue
            finally:
                self.polling -= 1
            for job in answer.get("jobs", []):
                self._arrived(job["run_id"], time.perf_counter())
                try:
                    await client.start(job["id"], job["token"])
                    self.started[job["run_id"]] = time.perf_counter()
                    await client.finish(
                        job["id"],
                        job["token"],
                        {"outcome": "succeeded", "has_changes": False, "log_size": 0, "message": ""},
                    )
                    self.finished[job["run_id"]] = time.perf_counter()
                except Exception as exc:
                    self.errors.append(f"job: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
