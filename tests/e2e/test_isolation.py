"""Per-run isolation with real agents, real bubblewrap and real terraform.

A hostile configuration (local-exec) runs next to a second, concurrent run on the same agent
(`--concurrency 2`) and tries to read the agent's token, its data directory, the other run's files and
state, /etc/shadow, and to signal the agent. With `--sandbox bwrap` every attempt fails; without it the
same attempts succeed, so the test can tell the difference. Then: a run over its memory limit is stopped
and says so, a graceful cancel still reaches terraform inside the sandbox, an agent killed with -9 takes
its sandboxed runs down, and an agent asked for a sandbox it cannot have refuses to start, saying why.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.admin import bootstrap
from outpost.agent.exitcodes import ExitCode
from outpost.api_client import OutpostAPI
from tests.conftest import CONFIGS
from tests.support.faults import leftover_processes
from tests.support.processes import Proc, Server, start_agent, wait_until

pytestmark = pytest.mark.e2e

FINAL = {"applied", "errored", "canceled", "planned_and_finished", "discarded"}
ATTEMPTS = ("token", "datadir", "other-files", "other-state", "host-files", "signal")


def reachable(path: Path) -> Path:
    """bubblewrap sets a sandbox up as the run's own uid, which must be able to pass through the
    directories above the agent's data dir and the tools (docs/security.md); pytest's are mode 0700."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)
    return path


class Pool:
    def __init__(self, server: Server, tools: Path, root: Path) -> None:
        self.server, self.tools, self.root = server, tools, root
        name = f"iso-{uuid.uuid4().hex[:8]}"
        self.org = name
        self.api = OutpostAPI(server.url, asyncio.run(bootstrap(server.db_url, name, f"{name}@example.com")))
        self.pool_id = self.api.create_pool(name, "pool")["id"]
        _, self.token = self.api.create_agent_token(self.pool_id, "isolation")
        self.agents: list[Proc] = []

    def agent(self, name: str, *args: str, env: dict[str, str] | None = None) -> tuple[Proc, Path]:
        data = self.root / name
        proc = start_agent(
            self.server.url, self.token, data, self.tools, "--kill-grace", "3", *args, name=name, env=env
        )
        self.agents.append(proc)
        return proc, data

    def workspace(self, name: str, config: str, **env: str) -> tuple[str, str]:
        ws = self.api.create_workspace(
            self.org, name, execution_mode="agent", agent_pool_id=self.pool_id, auto_apply=True
        )["id"]
        for key, value in env.items():
            self.api.add_variable(ws, key, value, category="env")
        return ws, self.api.upload_configuration(ws, CONFIGS / config)

    def push_state(self, ws: str, marker: str) -> None:
        raw = json.dumps(
            {
                "version": 4,
                "terraform_version": "1.0.3",
                "serial": 1,
                "lineage": str(uuid.uuid4()),
                "outputs": {"secret": {"value": marker, "type": "string"}},
                "resources": [],
            }
        ).encode()
        self.api.request("POST", f"/workspaces/{ws}/actions/lock", {"reason": "seed"})
        body = {
            "data": {"type": "state-versions", "attributes": {"serial": 1, "state": base64.b64encode(raw).decode()}}
        }
        self.api.request("POST", f"/workspaces/{ws}/state-versions", body)
        self.api.request("POST", f"/workspaces/{ws}/actions/unlock")

    def log(self, run_id: str, kind: str = "apply") -> str:
        return self.api.read_log(self.api.run(run_id), kind)

    def close(self) -> None:
        for proc in self.agents:
            proc.stop()
        self.api.close()


@pytest.fixture
def pool(server: Server, tools_dir: Path, tmp_path: Path) -> Iterator[Pool]:
    reachable(tools_dir)
    p = Pool(server, tools_dir, reachable(tmp_path))
    yield p
    p.close()
    assert leftover_processes(tmp_path) == []


def _attempts(log: str) -> dict[str, str]:
    found = dict(re.findall(r"ATTEMPT ([a-z-]+): (LEAKED.*|denied)", log))
    assert set(found) == set(ATTEMPTS), log
    return found


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_hostile_run_next_to_another_run(pool: Pool, sandbox: str) -> None:
    agent, data = pool.agent(f"agent-{sandbox}", "--concurrency", "2", "--sandbox", sandbox)
    wait_until(lambda: pool.api.agents(pool.pool_id), 60, what="the agent to register")
    state_marker = f"VICTIM-STATE-MARKER-{uuid.uuid4().hex[:8]}"
    victim_ws, victim_cv = pool.workspace("victim", "victim")
    pool.push_state(victim_ws, state_marker)
    attacker_ws, attacker_cv = pool.workspace(
        "attacker", "hostile", AGENT_PID=str(agent.pid), AGENT_DATA=str(data.resolve())
    )

    victim = pool.api.create_run(victim_ws, victim_cv)["id"]
    wait_until(lambda: "VICTIM-RUNNING" in pool.log(victim), 180, interval=0.3, what="the victim's apply")
    try:
        attacker = pool.api.wait_for_run(pool.api.create_run(attacker_ws, attacker_cv)["id"], FINAL, timeout=180)
        log = pool.api.read_log(attacker, "apply")
        why = f"{attacker['attributes']}\n{pool.api.read_log(attacker, 'plan')}\n{log}\n{agent.output()[-3000:]}"
        assert attacker["attributes"]["status"] == "applied", why
        assert "ATTACK-DONE" in log
        attempts = _attempts(log)
    finally:
        for config in data.glob("jobs/*/work/config"):
            if (config / "victim-secret.txt").exists():
                (config / "release").touch()
    assert pool.api.wait_for_run(victim, FINAL, timeout=120)["attributes"]["status"] == "applied"

    if sandbox == "bwrap":
        assert attempts == dict.fromkeys(ATTEMPTS, "denied")
    else:
        # The same attempts, without the sandbox, all succeed: what the sandbox is for.
        assert attempts["token"] == f"LEAKED {pool.token}"
        assert "LEAKED job-" in attempts["datadir"]
        assert attempts["other-files"] == "LEAKED VICTIM-FILE-MARKER-7f3a"
        assert attempts["other-state"] == f"LEAKED {state_marker}"
        assert attempts["host-files"].startswith("LEAKED root:")
        assert attempts["signal"] == f"LEAKED SIGCONT delivered to {agent.pid}"
    assert agent.alive()


def test_run_over_its_memory_limit_is_stopped_and_says_so(pool: Pool) -> None:
    agent, _ = pool.agent("hungry", "--sandbox", "bwrap", "--memory-limit", "256")
    ws, cv = pool.workspace("hog", "memory_hog")
    run = pool.api.wait_for_run(pool.api.create_run(ws, cv)["id"], FINAL, timeout=240)
    log = pool.api.read_log(run, "apply")
    assert run["attributes"]["status"] == "errored", log
    assert "more than the run's memory limit of 256 MiB" in log
    assert "memory limit" in (run["attributes"]["error-message"] or "")
    assert agent.alive()  # the run was stopped, not the agent


def test_cancel_reaches_terraform_in_the_sandbox(pool: Pool) -> None:
    pool.agent("canceler", "--sandbox", "bwrap")
    ws, cv = pool.workspace("sleeper", "long_sleep")
    run_id = pool.api.create_run(ws, cv)["id"]
    wait_until(lambda: "SLEEPER-STARTED" in pool.log(run_id), 180, interval=0.3, what="the sleeper's apply")
    pool.api.action(run_id, "cancel")
    run = pool.api.wait_for_run(run_id, FINAL, timeout=60)
    log = pool.api.read_log(run, "apply")
    assert run["attributes"]["status"] == "canceled", log
    # The SIGINT reached the process group inside the sandbox: terraform says so, or the provisioner's
    # command reports the signal. Which of the two terraform prints races: when the provisioner dies of the
    # same SIGINT first, the apply fails before terraform's own handler writes "Interrupt received".
    assert "Interrupt received" in log or "signal: interrupt" in log, log
    assert "(local-exec): SLEEPER-DONE" not in log


def test_killed_agent_takes_its_sandboxed_runs_down(pool: Pool, tmp_path: Path) -> None:
    agent, data = pool.agent("doomed", "--sandbox", "bwrap")
    ws, cv = pool.workspace("sleeper", "long_sleep")
    run_id = pool.api.create_run(ws, cv)["id"]
    wait_until(lambda: "SLEEPER-STARTED" in pool.log(run_id), 180, interval=0.3, what="the sleeper's apply")
    assert leftover_processes(data)
    os.kill(agent.pid, signal.SIGKILL)
    wait_until(lambda: not leftover_processes(data), 30, what="terraform and its sandbox to die with the agent")


def test_agent_refuses_a_sandbox_it_cannot_have(pool: Pool, tmp_path: Path) -> None:
    # No bubblewrap on the PATH.
    agent, _ = pool.agent("no-bwrap", "--sandbox", "bwrap", env={"PATH": str(tmp_path / "empty")})
    assert agent.wait(60) == ExitCode.USAGE
    assert "needs bubblewrap, which is not installed" in agent.output()
    assert "apt-get install bubblewrap" in agent.output()
    # A bubblewrap that cannot create namespaces (what a kernel without unprivileged user namespaces, or a
    # locked-down container, makes of it: that cannot be switched on and off here, so a stand-in says it).
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    agent, _ = pool.agent("no-userns", "--sandbox", "bwrap", env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert agent.wait(60) == ExitCode.USAGE
    assert "cannot create the sandbox's namespaces" in agent.output()
    assert "No permissions to creating new namespace" in agent.output()
    assert pool.api.agents(pool.pool_id) == []  # it never registered


@pytest.mark.parametrize(("run_as", "root"), [("unprivileged", False), ("root", True)])
def test_run_as(pool: Pool, run_as: str, root: bool) -> None:
    pool.agent(f"as-{run_as}", "--sandbox", "bwrap", "--run-as", run_as, "--sandbox-uid-base", "1500000")
    ws, cv = pool.workspace("whoami", "whoami")
    run = pool.api.wait_for_run(pool.api.create_run(ws, cv)["id"], FINAL, timeout=180)
    log = pool.api.read_log(run, "apply")
    assert run["attributes"]["status"] == "applied", log
    uid = int(re.search(r"\(local-exec\): RUN-UID=(\d+)", log).group(1))  # type: ignore[union-attr]
    assert uid == 0 if root else 1500000 <= uid < 1500000 + 4096
    assert "(local-exec): SHADOW-ABSENT" in log  # root or not, the host's files are not there


def test_links_a_run_plants_are_not_followed(pool: Pool) -> None:
    pool.agent("planted", "--sandbox", "bwrap")
    ws, cv = pool.workspace("planted", "planted_links")
    run = pool.api.wait_for_run(pool.api.create_run(ws, cv)["id"], FINAL, timeout=180)
    log = pool.api.read_log(run, "apply")
    assert "(local-exec): PLANTED" in log
    assert run["attributes"]["status"] == "errored", log
    assert "unsafe file" in (run["attributes"]["error-message"] or ""), run["attributes"]
    state = pool.api.http.get(f"/workspaces/{ws}/current-state-version")
    assert state.status_code == 404  # nothing was uploaded as the workspace's state


def test_builtin_agent_sandbox(tools_dir: Path, tmp_path: Path) -> None:
    from tests.support.processes import start_server

    reachable(tools_dir)
    server = start_server(reachable(tmp_path) / "srv", tools_dir, "--builtin-agent-sandbox", "bwrap")
    pool = Pool(server, tools_dir, tmp_path)
    try:
        ws = pool.api.create_workspace(pool.org, "remote", auto_apply=True)["id"]  # remote: the built-in agent
        cv = pool.api.upload_configuration(ws, CONFIGS / "whoami")
        run = pool.api.wait_for_run(pool.api.create_run(ws, cv)["id"], FINAL, timeout=180)
        log = pool.api.read_log(run, "apply")
        assert run["attributes"]["status"] == "applied", log
        assert "(local-exec): SHADOW-ABSENT" in log
        assert int(re.search(r"\(local-exec\): RUN-UID=(\d+)", log).group(1)) >= 1_000_000  # type: ignore[union-attr]
    finally:
        pool.close()
        server.proc.stop()
