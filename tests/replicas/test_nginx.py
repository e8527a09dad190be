"""Two replicas behind a real nginx (the shipped deploy/nginx/outpost.conf), real agents and real
terraform: runs created on one replica execute on an agent that nginx sends to the other; a replica
killed with SIGKILL mid-run loses no run, no state version and no log byte; a rolling restart of both
replicas while runs are queued and executing loses nothing."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from outpost.api_client import OutpostAPI
from tests.conftest import CONFIGS
from tests.replicas.conftest import Replicas
from tests.support import databases
from tests.support.faults import leftover_processes, tools_with_recorder
from tests.support.nginx import Nginx, start_nginx
from tests.support.processes import Proc, free_port, start_agent, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("heavy"),
    pytest.mark.skipif(not databases.is_postgres(), reason="several replicas need PostgreSQL"),
]

TIMINGS = (
    "--no-builtin-agent",
    "--heartbeat-interval",
    "0.5",
    "--agent-unknown-after",
    "10",
    "--agent-errored-after",
    "60",
    "--monitor-interval",
    "0.3",
    "--long-poll-timeout",
    "5",
)
FINAL = {"applied", "errored", "canceled", "planned_and_finished", "discarded"}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class Deployment:
    def __init__(self, replicas: Replicas, nginx: Nginx, tools: Path, root: Path) -> None:
        self.replicas, self.nginx, self.tools, self.root = replicas, nginx, tools, root
        self.org, token = replicas.organization()
        self.direct = [replicas.api(i, token) for i in range(len(replicas.servers))]
        self.via_nginx = OutpostAPI(nginx.url, token)
        pool = self.via_nginx.create_pool(self.org, "behind-nginx")
        self.pool_id = pool["id"]
        _, self.pool_token = self.via_nginx.create_agent_token(self.pool_id, "nginx agents")
        self.agents: list[Proc] = []

    def agent(self, name: str) -> Proc:
        proc = start_agent(
            self.nginx.url, self.pool_token, self.root / name, self.tools, "--kill-grace", "2", name=name
        )
        self.agents.append(proc)
        return proc

    def wait_idle(self, count: int) -> None:
        wait_until(
            lambda: sum(a["attributes"]["status"] == "idle" for a in self.via_nginx.agents(self.pool_id)) >= count,
            60,
            what=f"{count} idle agents",
        )

    def workspace(self, name: str, seconds: int) -> tuple[str, str]:
        api = self.direct[0]
        ws = api.create_workspace(self.org, name, execution_mode="agent", agent_pool_id=self.pool_id, auto_apply=True)
        api.add_variable(ws["id"], "seconds", str(seconds))
        return ws["id"], api.upload_configuration(ws["id"], CONFIGS / "slow_apply")

    def close(self) -> None:
        for proc in self.agents:
            proc.stop()
        for api in [*self.direct, self.via_nginx]:
            api.close()
        self.nginx.stop()


@pytest.fixture
def deploy(make_replicas: Any, tools_dir: Path, tmp_path: Path) -> Iterator[Any]:
    made: list[Deployment] = []

    def _deploy(upstream: list[str], tools: Path) -> Deployment:
        nginx_port = free_port()
        replicas: Replicas = make_replicas(2, *TIMINGS, "--external-url", f"http://127.0.0.1:{nginx_port}")
        ports = [_port(s.url) for s in replicas.servers]
        nginx = start_nginx(tmp_path / "nginx", [line.format(*ports) for line in upstream], port=nginx_port)
        made.append(Deployment(replicas, nginx, tools, tmp_path / "agents"))
        return made[-1]

    yield _deploy
    for deployment in made:
        deployment.close()
    assert not leftover_processes(tmp_path / "agents")


def _agent_requests(nginx: Nginx) -> list[list[str]]:
    return [entry for entry in nginx.access_log() if entry[1].startswith("/api/agent/v1/")]


def test_replica_killed_mid_run_loses_nothing_and_the_run_completes_through_the_survivor(
    deploy: Any, tools_dir: Path, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    tools = tools_with_recorder(tools_dir, tmp_path / "tools", record)
    # nginx sends the agent to replica 1 (the second); replica 0, where runs are created, is its backup.
    d: Deployment = deploy(["server 127.0.0.1:{1} max_fails=1 fail_timeout=3s;", "server 127.0.0.1:{0} backup;"], tools)
    first, second = d.replicas.servers
    d.agent("through-nginx")
    d.wait_idle(1)
    ws_id, cv_id = d.workspace("killed-replica", seconds=6)
    run_id = d.direct[0].create_run(ws_id, cv_id)["id"]  # created through replica 0
    wait_until(lambda: "tick 1" in d.direct[0].read_log(d.direct[0].run(run_id), "apply"), 90, what="the apply")
    queued = d.direct[0].create_run(ws_id, cv_id, message="queued behind")["id"]

    # Until now every agent request went through nginx to replica 1: the job reached the agent there.
    before = _agent_requests(d.nginx)
    assert {e[3] for e in before} == {f"127.0.0.1:{_port(second.url)}"}, before
    assert any(e[1] == "/api/agent/v1/poll" and int(e[4]) > 100 for e in before), "a poll answer carried the job"

    second.proc.signal(signal.SIGKILL)
    second.proc.stop()

    api = d.direct[0]
    run = api.wait_for_run(run_id, FINAL, timeout=120)
    assert run["attributes"]["status"] == "applied", run["attributes"]
    assert api.wait_for_run(queued, FINAL, timeout=120)["attributes"]["status"] in ("applied", "planned_and_finished")
    after = _agent_requests(d.nginx)[len(before) :]
    assert f"127.0.0.1:{_port(first.url)}" in {e[3].split(", ")[-1] for e in after}, "the survivor took over"

    # Every byte terraform wrote is stored once, in order: the recorder holds what terraform printed in
    # the two runs, one after the other; the state version of the apply is there.
    second_run = api.run(queued)
    for phase in ("plan", "apply"):
        bodies = b""
        for each in (run, second_run):
            if api.phase(each, phase)["attributes"]["status"] in ("unreachable", "pending"):
                continue
            stored = httpx.get(api.phase(each, phase)["attributes"]["log-read-url"], timeout=30).content
            assert stored[:1] == b"\x02" and stored[-1:] == b"\x03"
            header, _, body = stored[1:-1].partition(b"Initializing plugins and modules...\n")
            assert header.startswith(b"Terraform v1.0.3\n")
            bodies += body
        assert bodies == Path(f"{record}.{phase}").read_bytes(), phase
    assert b"Apply complete!" in Path(f"{record}.apply").read_bytes()
    state = api.request("GET", f"/workspaces/{ws_id}/current-state-version")["data"]
    assert state["relationships"]["run"]["data"]["id"] in (run_id, queued)
    versions = api.request("GET", f"/workspaces/{ws_id}/state-versions")["data"]
    assert run_id in {v["relationships"]["run"]["data"]["id"] for v in versions}


def _wait_served_by(nginx: Nginx, server: Any, since: int) -> None:
    upstream = f"127.0.0.1:{_port(server.url)}"
    wait_until(
        lambda: any(e[3] == upstream and int(e[2]) < 500 for e in nginx.access_log()[since:]),
        30,
        what=f"nginx to send requests to {upstream} again",
    )


def test_rolling_restart_of_the_replicas_loses_nothing(deploy: Any, tools_dir: Path) -> None:
    d: Deployment = deploy(
        ["server 127.0.0.1:{0} max_fails=1 fail_timeout=3s;", "server 127.0.0.1:{1} max_fails=1 fail_timeout=3s;"],
        tools_dir,
    )
    d.agent("a")
    d.agent("b")
    d.wait_idle(2)
    api = d.via_nginx
    runs: list[tuple[str, str]] = []
    for i in range(4):
        ws_id, cv_id = d.workspace(f"rolling-{i}", seconds=4)
        runs.append((ws_id, api.create_run(ws_id, cv_id)["id"]))
        runs.append((ws_id, api.create_run(ws_id, cv_id, message="second")["id"]))
    # Two runs execute (two agents), the rest wait: restart each replica in turn, as a rollout does.
    wait_until(lambda: any(api.run(r)["attributes"]["status"] == "applying" for _, r in runs), 120, what="an apply")
    for i in range(len(d.replicas.servers)):
        seen = len(d.nginx.access_log())
        restarted = d.replicas.restart(i)
        # As docs/deployment.md says: the next replica goes only once nginx serves from this one again.
        _wait_served_by(d.nginx, restarted, seen)
    final = {run_id: api.wait_for_run(run_id, FINAL, timeout=240) for _, run_id in runs}
    statuses = {run_id: run["attributes"]["status"] for run_id, run in final.items()}
    assert set(statuses.values()) <= {"applied", "planned_and_finished"}, statuses
    for ws_id, run_id in runs[::2]:
        run = final[run_id]
        assert run["attributes"]["status"] == "applied"
        log = api.read_log(run, "apply")
        assert all(f"tick {n}" in log for n in range(1, 5)) and "Apply complete!" in log, log
        versions = api.request("GET", f"/workspaces/{ws_id}/state-versions")["data"]
        assert run_id in {v["relationships"]["run"]["data"]["id"] for v in versions}
    assert all(p.alive() for p in d.agents), "the agents rode through both restarts"
