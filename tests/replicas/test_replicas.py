"""Two replicas on one PostgreSQL database, with real processes and real HTTP: a job or an order created
on one replica wakes a long-poll held by the other (LISTEN/NOTIFY), capability URLs handed out by one
work on the other, and the background duties, run by both at once, act exactly once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from outpost.agent.client import Backoff, Client
from outpost.api_client import OutpostAPI, pack
from outpost.server import log_watch
from outpost.store import logs
from outpost.store.db import Database
from outpost.store.tables import Job, Plan
from tests.conftest import CONFIGS
from tests.replicas.conftest import Replicas
from tests.support import databases
from tests.support.processes import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not databases.is_postgres(), reason="several replicas need PostgreSQL"),
]

# No fallback can explain a quick pickup: polls are held for a minute and the monitor's sweep is a
# minute away, so only a NOTIFY from the other replica can wake the waiting poll at once.
SLOW_FALLBACK = ("--no-builtin-agent", "--long-poll-timeout", "60", "--monitor-interval", "60")


@dataclass
class Setup:
    replicas: Replicas
    org: str
    apis: list[OutpostAPI]
    pool_id: str
    pool_token: str


@pytest.fixture
def two(make_replicas: Any) -> Iterator[Setup]:
    replicas: Replicas = make_replicas(2, *SLOW_FALLBACK)
    org, token = replicas.organization()
    apis = [replicas.api(0, token), replicas.api(1, token)]
    pool = apis[0].create_pool(org, "replicated")
    _, pool_token = apis[0].create_agent_token(pool["id"], "replicas test")
    yield Setup(replicas, org, apis, pool["id"], pool_token)
    for api in apis:
        api.close()


def _workspace(api: OutpostAPI, org: str, pool_id: str, name: str) -> tuple[str, str]:
    ws = api.create_workspace(org, name, execution_mode="agent", agent_pool_id=pool_id)
    return ws["id"], api.upload_configuration(ws["id"], CONFIGS / "counter")


async def _wake_latencies(setup: Setup, rounds: int) -> list[float]:
    """An agent long-polls replica 0; a plan-only run is created through replica 1 while it waits."""
    ws_id, cv_id = _workspace(setup.apis[1], setup.org, setup.pool_id, "wake")
    client = Client(setup.replicas.servers[0].url, backoff=Backoff(base=0.05, cap=0.5))
    latencies = []
    try:
        await client.register(setup.pool_token, "waiter", 1)
        for _ in range(rounds):
            poll = asyncio.create_task(client.poll(1, [], {}, 60))
            await asyncio.sleep(0.3)  # the poll reaches its wait (it claims first, and there is nothing yet)
            assert not poll.done(), "the poll waits: there is no job yet"
            run = await asyncio.to_thread(setup.apis[1].create_run, ws_id, cv_id, plan_only=True)
            created = time.monotonic()
            answer = await asyncio.wait_for(poll, 30)
            latencies.append(time.monotonic() - created)
            [job] = answer["jobs"]
            assert job["run_id"] == run["id"]
            await client.start(job["id"], job["token"])
            await client.finish(job["id"], job["token"], {"outcome": "succeeded", "log_size": 0})
        await client.deregister()
    finally:
        await client.close()
    return latencies


def test_a_run_created_on_one_replica_wakes_a_poll_waiting_on_the_other(two: Setup) -> None:
    latencies = asyncio.run(_wake_latencies(two, 5))
    # Answered long before any fallback (60 s): the wake came through NOTIFY. The milliseconds are
    # measured by bench/wakeup_latency.py; a shared test machine only bounds them loosely here.
    assert max(latencies) < 10, latencies
    print(f"cross-replica wake-ups: median {statistics.median(latencies) * 1000:.0f} ms of {latencies}")


async def _cancel_reaches_the_other_replica(setup: Setup) -> float:
    ws_id, cv_id = _workspace(setup.apis[0], setup.org, setup.pool_id, "cancel")
    run = setup.apis[0].create_run(ws_id, cv_id, plan_only=True)
    client = Client(setup.replicas.servers[0].url, backoff=Backoff(base=0.05, cap=0.5))
    try:
        await client.register(setup.pool_token, "worker", 1)
        [job] = (await client.poll(1, [], {}, 5))["jobs"]
        await client.start(job["id"], job["token"])
        poll = asyncio.create_task(client.poll(0, [job["id"]], {}, 60))
        await asyncio.sleep(0.3)
        assert not poll.done(), "the poll waits: no order yet"
        await asyncio.to_thread(setup.apis[1].action, run["id"], "cancel")
        asked = time.monotonic()
        answer = await asyncio.wait_for(poll, 30)
        assert answer["cancel"] == [{"job": job["id"], "kind": "cancel"}]
        return time.monotonic() - asked
    finally:
        await client.close()


def test_a_cancel_on_one_replica_reaches_the_agent_polling_the_other(two: Setup) -> None:
    assert asyncio.run(_cancel_reaches_the_other_replica(two)) < 10


def test_a_job_claimed_on_one_replica_is_delivered_again_by_the_other(two: Setup) -> None:
    """An agent quiet on both replicas (outpost.server.quiet) claims a job through one, and the answer is
    lost; its next poll, through the other replica, must find the job: the claim is announced to every
    replica, which then reads the agent's jobs again instead of answering from memory."""

    async def scenario() -> None:
        ws_id, cv_id = _workspace(setup.apis[0], setup.org, setup.pool_id, "lost")
        first = Client(setup.replicas.servers[0].url, backoff=Backoff(base=0.05, cap=0.5))
        other = Client(setup.replicas.servers[1].url, backoff=Backoff(base=0.05, cap=0.5))
        try:
            await first.register(setup.pool_token, "forgetful", 1)
            other.session_token = first.session_token
            for client in (first, other, first, other):  # polls that take nothing: quiet on both replicas
                assert (await client.poll(0, [], {}, 0))["jobs"] == []
            run = await asyncio.to_thread(setup.apis[0].create_run, ws_id, cv_id, plan_only=True)
            (lost,) = (await first.poll(1, [], {}, 5))["jobs"]
            assert lost["run_id"] == run["id"]
            (again,) = (await other.poll(1, [], {}, 5))["jobs"]
            assert again["id"] == lost["id"] and again["token"] != lost["token"]
        finally:
            await first.close()
            await other.close()

    setup = two
    asyncio.run(scenario())


async def _agent_writes_a_log(setup: Setup, run_id: str, text: bytes) -> None:
    client = Client(setup.replicas.servers[1].url, backoff=Backoff(base=0.05, cap=0.5))
    try:
        await client.register(setup.pool_token, "logger", 1)
        [job] = (await client.poll(1, [], {}, 5))["jobs"]
        assert job["run_id"] == run_id
        await client.start(job["id"], job["token"])
        assert (await client.append_log(job["id"], job["token"], 0, text)).size == len(text)
        await client.finish(job["id"], job["token"], {"outcome": "succeeded", "log_size": len(text)})
        await client.deregister()
    finally:
        await client.close()


def test_a_reader_on_one_replica_quickens_appends_on_the_other(two: Setup) -> None:
    """The agent appends through replica 1; the log is read through replica 0: the next append's answer,
    from replica 1, asks for the fast pace."""
    ws_id, cv_id = _workspace(two.apis[0], two.org, two.pool_id, "pace")
    run = two.apis[0].create_run(ws_id, cv_id, plan_only=True)

    async def scenario() -> None:
        client = Client(two.replicas.servers[1].url, backoff=Backoff(base=0.05, cap=0.5))
        try:
            await client.register(two.pool_token, "pacer", 1)
            [job] = (await client.poll(1, [], {}, 5))["jobs"]
            await client.start(job["id"], job["token"])
            unread = await client.append_log(job["id"], job["token"], 0, b"one\n")
            assert unread.interval == log_watch.UNWATCHED_INTERVAL
            url = two.apis[0].phase(two.apis[0].run(run["id"]), "plan")["attributes"]["log-read-url"]
            assert url.startswith(two.replicas.servers[0].url)
            async with httpx.AsyncClient() as http:
                assert (await http.get(url, params={"offset": 0, "limit": 100})).content == b"\x02one\n"
            read = await client.append_log(job["id"], job["token"], 4, b"two\n")
            assert read.size == 8 and read.interval == log_watch.WATCHED_INTERVAL
        finally:
            await client.close()

    asyncio.run(scenario())


def test_capability_urls_from_one_replica_work_on_the_other(two: Setup) -> None:
    first, second = (s.url for s in two.replicas.servers)
    api = two.apis[0]

    def elsewhere(url: str) -> str:
        assert url.startswith(first), url
        return second + url[len(first) :]

    # Upload: a configuration version made on replica 0, its archive PUT to replica 1.
    ws = api.create_workspace(two.org, "capabilities", execution_mode="agent", agent_pool_id=two.pool_id)
    body = {"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}}
    cv = api.request("POST", f"/workspaces/{ws['id']}/configuration-versions", body)["data"]
    assert httpx.put(elsewhere(cv["attributes"]["upload-url"]), content=pack(CONFIGS / "counter")).status_code == 200
    assert api.request("GET", f"/configuration-versions/{cv['id']}")["data"]["attributes"]["status"] == "uploaded"

    # Log read: the log written through replica 1, its URL handed out by replica 0, read through replica 1.
    run = api.create_run(ws["id"], cv["id"], plan_only=True)
    text = b"Terraform v1.0.3\nwritten through the other replica\n"
    asyncio.run(_agent_writes_a_log(two, run["id"], text))
    run = api.wait_for_run(run["id"], {"planned_and_finished"}, timeout=30)
    assert (
        httpx.get(elsewhere(api.phase(run, "plan")["attributes"]["log-read-url"])).content == b"\x02" + text + b"\x03"
    )

    # State download: a state version pushed through replica 0, downloaded from replica 1.
    raw = json.dumps(
        {"version": 4, "serial": 1, "lineage": "l-1", "terraform_version": "1.0.3", "outputs": {}, "resources": []}
    ).encode()
    api.request("POST", f"/workspaces/{ws['id']}/actions/lock", {"reason": "push"})
    attrs = {
        "serial": 1,
        "md5": hashlib.md5(raw).hexdigest(),
        "lineage": "l-1",
        "state": base64.b64encode(raw).decode(),
    }
    sv = api.request(
        "POST", f"/workspaces/{ws['id']}/state-versions", {"data": {"type": "state-versions", "attributes": attrs}}
    )
    download = httpx.get(elsewhere(sv["data"]["attributes"]["hosted-state-download-url"]))
    assert download.status_code == 200 and download.content == raw

    # A forged capability is refused by either replica.
    forged = elsewhere(sv["data"]["attributes"]["hosted-state-download-url"])[:-4] + "0000"
    assert httpx.get(forged).status_code == 404


# --- background duties on both replicas at once ---------------------------------------------------------

DUTIES = (
    "--no-builtin-agent",
    "--monitor-interval",
    "0.1",
    "--agent-unknown-after",
    "1",
    "--agent-errored-after",
    "2",
    "--plan-timeout",
    "8",
)


async def _abandon_jobs(setup: Setup, ws_cvs: list[tuple[str, str, str]]) -> dict[str, list[str]]:
    """Agents that take a job and go silent (no heartbeat) after starting it, or before (each of those in
    a pool of its own, so that no other agent picks its requeued job up), and agents that keep
    heartbeating on a job that runs past the plan timeout."""
    urls = [s.url for s in setup.replicas.servers]
    outcome: dict[str, list[str]] = {"started": [], "unstarted": [], "overrun": []}
    clients: list[Client] = []
    overrunning: list[Client] = []

    async def keep_alive() -> None:
        while True:
            await asyncio.gather(*(client.heartbeat([]) for client in list(overrunning)))
            await asyncio.sleep(0.2)

    beat = asyncio.create_task(keep_alive())
    try:
        for i, kind in enumerate(["overrun"] * 4 + ["started"] * 6 + ["unstarted"] * 6):
            ws_id, cv_id, pool_token = ws_cvs[i]
            await asyncio.to_thread(setup.apis[i % 2].create_run, ws_id, cv_id, plan_only=True)
            client = Client(urls[i % 2], backoff=Backoff(base=0.05, cap=0.5))
            clients.append(client)
            await client.register(pool_token, f"{kind}-{i}", 1)
            [job] = (await client.poll(1, [], {}, 5))["jobs"]
            if kind != "unstarted":
                await client.start(job["id"], job["token"])
            if kind == "overrun":
                overrunning.append(client)
            outcome[kind].append(job["id"])
        try:
            await asyncio.to_thread(wait_until, lambda: _all_settled(setup.replicas.db_url, outcome), 60, 0.2)
        except TimeoutError:
            pytest.fail(f"the duties did not settle: job statuses {_last_seen}")
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        for client in clients:
            await client.close()
    return outcome


_last_seen: list[dict[str, list[str]]] = []


def _all_settled(url: str, outcome: dict[str, list[str]]) -> bool:
    async def check() -> bool:
        db = Database(url, pool_size=1)
        try:
            async with db.read() as s:
                jobs = {j.id: j for j in (await s.execute(select(Job))).scalars()}
        finally:
            await db.dispose()
        expected = {"started": "errored", "unstarted": "queued", "overrun": "canceled"}
        seen = {kind: sorted({jobs[j].status for j in ids}) for kind, ids in outcome.items()}
        _last_seen[:] = [seen]
        return all(seen[kind] == [status] for kind, status in expected.items())

    return asyncio.run(check())


async def _plan_logs(url: str, job_ids: list[str]) -> dict[str, str]:
    db = Database(url, pool_size=1)
    try:
        async with db.read() as s:
            plans = (
                await s.execute(
                    select(Job.id, Plan.id).join(Plan, Plan.run_id == Job.run_id).where(Job.id.in_(job_ids))
                )
            ).all()
            return {job_id: (await logs.read_all(s, plan_id)).decode() for job_id, plan_id in plans}
    finally:
        await db.dispose()


def test_background_duties_run_by_both_replicas_act_exactly_once(make_replicas: Any) -> None:
    replicas: Replicas = make_replicas(2, *DUTIES)
    org, token = replicas.organization()
    apis = [replicas.api(0, token), replicas.api(1, token)]
    try:
        pool = apis[0].create_pool(org, "duties")
        _, pool_token = apis[0].create_agent_token(pool["id"], "duties")
        setup = Setup(replicas, org, apis, pool["id"], pool_token)
        ws_cvs = []
        for i in range(16):
            if i < 10:
                pool_id, token_for_pool = pool["id"], pool_token
            else:
                own = apis[0].create_pool(org, f"alone-{i}")
                pool_id, token_for_pool = own["id"], apis[0].create_agent_token(own["id"], "alone")[1]
            ws_cvs.append((*_workspace(apis[0], org, pool_id, f"duty-{i}"), token_for_pool))
        outcome = asyncio.run(_abandon_jobs(setup, ws_cvs))
        # Both monitors keep running for a while longer: a second action would show now.
        time.sleep(1.0)
        final = asyncio.run(_plan_logs(replicas.db_url, outcome["started"] + outcome["overrun"]))
    finally:
        for api in apis:
            api.close()

    assert _all_settled(replicas.db_url, outcome)
    for job_id in outcome["started"]:
        assert final[job_id].count("stopped reporting and was declared errored") == 1, final[job_id]
    for job_id in outcome["overrun"]:
        assert final[job_id].count("exceeded its timeout of 8 s") == 1, final[job_id]
    server_logs = "".join(s.proc.output() for s in replicas.servers)
    for job_id in outcome["unstarted"]:
        assert server_logs.count(f"job {job_id} requeued") == 1
    assert "Traceback" not in server_logs


def test_the_listener_reconnects_and_wakeups_cross_replicas_again(two: Setup) -> None:
    import psycopg

    dbname = two.replicas.db_url.rsplit("/", 1)[1]
    with psycopg.connect(databases.admin_url(), autocommit=True) as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = 'outpost-listener' AND datname = %s"
        before = {int(r[0]) for r in conn.execute(query, (dbname,)).fetchall()}
        assert len(before) == 2, "one LISTEN connection per replica"
        for pid in before:  # the database drops them (a restart, a failover, a network cut)
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(
            lambda: len({int(r[0]) for r in conn.execute(query, (dbname,)).fetchall()} - before) == 2,
            30,
            what="both replicas to listen again",
        )
    assert max(asyncio.run(_wake_latencies(two, 2))) < 10
    assert all("reconnecting" in s.proc.output() for s in two.replicas.servers)
