"""The pace of a log's appends over real HTTP: each append's answer tells the agent to gather output for
500 ms while nobody reads the log, for 100 ms once someone does (through the log-read URL or the run
page), whichever replica they read on (the stamp is in the database)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from outpost.admin import bootstrap
from outpost.server import log_watch
from outpost.store.db import Database
from outpost.store.tables import Plan
from tests.support.processes import Server
from tests.support.webui import UI
from tests.support.world import AgentProtocol, Client, World

pytestmark = pytest.mark.integration


@pytest.fixture
def world(server: Server) -> Iterator[tuple[World, AgentProtocol]]:
    w = World(url=server.url, db_url=server.db_url, org=f"pace-{uuid.uuid4().hex[:8]}")
    w.owner = Client(server.url, asyncio.run(bootstrap(server.db_url, w.org, f"o-{uuid.uuid4().hex[:6]}@x.io")))
    w.users["owner"] = w.owner
    protocol = AgentProtocol(server.url)
    yield w, protocol
    protocol.close()
    w.close()


def _running_plans(world: World, protocol: AgentProtocol, names: list[str]) -> dict[str, dict[str, Any]]:
    """A started plan job per workspace name: {name: {"run", "job", "plan_id"}}."""
    pool, token = world.pool("p")
    runs = {}
    for name in names:
        ws = world.workspace(name, **{"execution-mode": "agent", "agent-pool-id": pool})
        runs[name] = world.run(ws, world.upload(ws))
    _, session = protocol.register(token["attributes"]["token"], capacity=len(names))
    jobs = {j["run_id"]: j for j in protocol.claim(session, len(names))}
    out = {}
    for name, run in runs.items():
        job = jobs[run["id"]]
        assert protocol.call("POST", f"/jobs/{job['id']}/start", job["token"]).status_code == 204
        out[name] = {"run": run, "job": job, "plan_id": run["relationships"]["plan"]["data"]["id"]}
    return out


def _append(protocol: AgentProtocol, job: dict[str, str], offset: int, data: bytes) -> dict[str, Any]:
    resp = protocol.call("PUT", f"/jobs/{job['id']}/logs?offset={offset}", job["token"], content=data)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _stamp(db_url: str, plan_id: str) -> Any:
    async def read() -> Any:
        db = Database(db_url)
        try:
            async with db.read() as session:
                return (await session.execute(select(Plan.log_watched_at).where(Plan.id == plan_id))).scalar_one()
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_appends_quicken_while_someone_reads_the_log(world: tuple[World, AgentProtocol], server: Server) -> None:
    w, protocol = world
    owner = w.owner
    assert owner is not None
    plans = _running_plans(w, protocol, ["unread", "api", "page"])

    # Nobody reads: the slow pace between appends.
    for name in plans:
        body = _append(protocol, plans[name]["job"], 0, b"line 1\n")
        assert body["size"] == 7 and body["interval"] == log_watch.UNWATCHED_INTERVAL, body

    # A client follows one log through its log-read URL (as the terraform CLI does): that log's appends
    # quicken, and no other's.
    url = owner.ok("GET", f"/plans/{plans['api']['plan_id']}")["data"]["attributes"]["log-read-url"]
    read = httpx.get(url, params={"offset": 0, "limit": 1024})
    assert read.content == b"\x02line 1\n"
    assert _append(protocol, plans["api"]["job"], 7, b"line 2\n")["interval"] == log_watch.WATCHED_INTERVAL
    assert _append(protocol, plans["unread"]["job"], 7, b"line 2\n")["interval"] == log_watch.UNWATCHED_INTERVAL

    # Someone opens the run page: its live stream counts as reading the log being written.
    ui = UI(server.url)
    try:
        assert ui.sign_in(token=owner.token).status_code == 303  # type: ignore[arg-type]
        path = f"/app/{w.org}/workspaces/page/runs/{plans['page']['run']['id']}/live"
        with ui.http.stream("GET", path, timeout=10) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if line == "event: status":  # sent after the page's logs were read
                    break
    finally:
        ui.close()
    assert _append(protocol, plans["page"]["job"], 7, b"line 2\n")["interval"] == log_watch.WATCHED_INTERVAL
    assert _append(protocol, plans["unread"]["job"], 14, b"line 3\n")["interval"] == log_watch.UNWATCHED_INTERVAL

    # Readers polling hard cost one stamp per log every few seconds, not a write per read.
    stamped = _stamp(server.db_url, plans["api"]["plan_id"])
    assert stamped is not None
    for _ in range(5):
        assert httpx.get(url, params={"offset": 8, "limit": 1024}).content == b"line 2\n"
    assert _stamp(server.db_url, plans["api"]["plan_id"]) == stamped

    # A finished log is no longer stamped by its readers.
    job = plans["api"]["job"]
    done = protocol.call("POST", f"/jobs/{job['id']}/finish", job["token"], json={"outcome": "failed", "log_size": 14})
    assert done.status_code == 204, done.text
    time.sleep(log_watch.STAMP_EVERY + 0.1)  # past the throttle: a read now would stamp a log still being written
    assert httpx.get(url, params={"offset": 15, "limit": 1024}).content.endswith(b"\x03")
    assert _stamp(server.db_url, plans["api"]["plan_id"]) == stamped
