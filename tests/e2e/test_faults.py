"""Faults with real processes and real terraform: dead, frozen and revoked agents, a killed server, a
network partition, signals, cancel and force-cancel, timeouts. Short timings come from flags, and every
wait polls for a condition (no fixed sleeps). After each, no terraform or provider process is left."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outpost.admin import bootstrap
from outpost.agent.exitcodes import ExitCode
from outpost.api_client import APIError, OutpostAPI
from tests.conftest import CONFIGS
from tests.support.faults import TcpProxy, leftover_processes, tools_with_fake, tools_with_recorder
from tests.support.processes import Proc, Server, free_port, start_agent, start_server, wait_until

pytestmark = pytest.mark.e2e

FAST = [
    "--no-builtin-agent",
    "--heartbeat-interval",
    "0.5",
    "--agent-unknown-after",
    "2",
    "--agent-errored-after",
    "3",
    "--monitor-interval",
    "0.3",
    "--force-cancel-cooloff",
    "1",
    "--long-poll-timeout",
    "5",
]
UNKNOWN_AFTER, ERRORED_AFTER, TICK = 2.0, 3.0, 0.3
STATE_FINAL = {"applied", "errored", "canceled", "planned_and_finished", "discarded"}


class Env:
    """A server with short timings, an organization, a pool, and agents that are always cleaned up."""

    def __init__(self, server: Server, tools: Path, root: Path) -> None:
        self.server, self.tools, self.root = server, tools, root
        name = f"faults-{os.getpid()}-{time.monotonic_ns()}"
        self.org = name
        self.api = OutpostAPI(server.url, asyncio.run(bootstrap(server.db_url, name, f"{name}@example.com")))
        pool = self.api.create_pool(name, "pool")
        self.pool_id = pool["id"]
        self.token_id, self.token = self.api.create_agent_token(self.pool_id, "fault token")
        self.agents: list[Proc] = []
        self.n = 0

    def agent(self, *args: str, address: str | None = None, name: str | None = None) -> Proc:
        self.n += 1
        proc = start_agent(
            address or self.server.url,
            self.token,
            self.root / f"agent{self.n}",
            self.tools,
            "--kill-grace",
            "2",
            *args,
            name=name or f"agent{self.n}",
        )
        self.agents.append(proc)
        return proc

    def agent_status(self, name: str) -> str | None:
        for agent in self.api.agents(self.pool_id):
            if agent["attributes"]["name"] == name:
                return str(agent["attributes"]["status"])
        return None

    def workspace(self, name: str, config: str, **variables: str) -> tuple[str, str]:
        ws = self.api.create_workspace(
            self.org, name, execution_mode="agent", agent_pool_id=self.pool_id, auto_apply=True
        )
        for key, value in variables.items():
            self.api.add_variable(ws["id"], key, value)
        return ws["id"], self.api.upload_configuration(ws["id"], CONFIGS / config)

    def wait_log(self, run_id: str, phase: str, text: str, timeout: float = 60) -> None:
        wait_until(lambda: text in self.api.read_log(self.api.run(run_id), phase), timeout, what=repr(text))

    def no_leftovers(self) -> None:
        wait_until(lambda: not leftover_processes(self.root), 15, what="terraform processes to be gone")

    def close(self) -> None:
        for proc in self.agents:
            proc.stop()
        self.api.close()


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("fast"), tools_dir, *FAST)
    yield srv
    srv.proc.stop()


@pytest.fixture
def env(fast_server: Server, tools_dir: Path, tmp_path: Path) -> Iterator[Env]:
    e = Env(fast_server, tools_dir, tmp_path)
    yield e
    e.close()
    assert not leftover_processes(tmp_path)


def _status(api: OutpostAPI, run_id: str) -> str:
    return str(api.run(run_id)["attributes"]["status"])


def _current_state(api: OutpostAPI, ws_id: str) -> dict[str, Any]:
    return dict(api.request("GET", f"/workspaces/{ws_id}/current-state-version")["data"])


def _set_vars(api: OutpostAPI, ws_id: str, **values: str) -> None:
    for var in api.request("GET", f"/workspaces/{ws_id}/vars")["data"]:
        if var["attributes"]["key"] in values:
            body = {"data": {"type": "vars", "attributes": {"value": values[var["attributes"]["key"]]}}}
            api.request("PATCH", f"/workspaces/{ws_id}/vars/{var['id']}", body)


def test_killed_agent_errors_its_run_frees_the_workspace_and_keeps_the_state(env: Env) -> None:
    doomed = env.agent(name="doomed")
    ws_id, cv = env.workspace("killed", "slow_apply", seconds="1", marker="one")
    first = env.api.wait_for_run(env.api.create_run(ws_id, cv)["id"], STATE_FINAL)
    assert first["attributes"]["status"] == "applied"
    before = _current_state(env.api, ws_id)

    # A slow apply with a change to make: a new marker (in the resource's triggers), a long provisioner.
    _set_vars(env.api, ws_id, seconds="60", marker="two")
    victim = env.api.create_run(ws_id, cv)["id"]
    env.wait_log(victim, "apply", "tick 2")
    queued = env.api.create_run(ws_id, cv)["id"]
    assert _status(env.api, queued) == "pending"

    doomed.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: env.agent_status("doomed") == "unknown", 10, what="unknown")
    run = env.api.wait_for_run(victim, {"errored"}, timeout=30)
    elapsed = time.monotonic() - killed_at
    assert elapsed < UNKNOWN_AFTER + ERRORED_AFTER + 4 * TICK + 3, elapsed
    assert "doomed" in run["attributes"]["error-message"]
    assert env.agent_status("doomed") == "errored"
    env.no_leftovers()  # the reaper took terraform and its local-exec down with the agent
    assert _current_state(env.api, ws_id)["id"] == before["id"]  # the interrupted apply changed nothing

    # The queued run went ahead (its plan waits for an agent); it plans with quick settings.
    assert _status(env.api, queued) == "plan_queued"
    _set_vars(env.api, ws_id, seconds="1", marker="three")
    env.agent(name="rescuer")
    done = env.api.wait_for_run(queued, STATE_FINAL, timeout=60)
    assert done["attributes"]["status"] == "applied"
    assert "Outpost agent rescuer" in env.api.read_log(done, "plan")
    assert _current_state(env.api, ws_id)["attributes"]["serial"] > before["attributes"]["serial"]


def test_frozen_agent_that_comes_back_is_told_to_exit(env: Env) -> None:
    frozen = env.agent(name="frozen")
    ws_id, cv = env.workspace("frozen", "slow_apply", seconds="60")
    run_id = env.api.create_run(ws_id, cv)["id"]
    env.wait_log(run_id, "apply", "tick 1")
    frozen.signal(signal.SIGSTOP)
    try:
        env.api.wait_for_run(run_id, {"errored"}, timeout=30)
        assert env.agent_status("frozen") == "errored"
    finally:
        frozen.signal(signal.SIGCONT)
    assert frozen.wait(30) == ExitCode.AGENT_ERRORED
    assert "declared errored" in frozen.output() or "stopped reporting" in frozen.output()
    env.no_leftovers()


def test_revoking_the_token_mid_job_stops_the_agent_and_errors_the_run(env: Env) -> None:
    agent = env.agent(name="revoked")
    ws_id, cv = env.workspace("revoke", "slow_apply", seconds="60")
    run_id = env.api.create_run(ws_id, cv)["id"]
    env.wait_log(run_id, "apply", "tick 1")
    env.api.request("DELETE", f"/authentication-tokens/{env.token_id}")
    assert agent.wait(15) == ExitCode.TOKEN_REVOKED
    run = env.api.wait_for_run(run_id, {"errored"}, timeout=10)
    assert "revoked" in run["attributes"]["error-message"]
    assert env.agent_status("revoked") == "exited"  # at once, not unknown then errored minutes later
    env.no_leftovers()


def test_network_partition_longer_than_unknown_after(tools_dir: Path, tmp_path: Path) -> None:
    # A server of its own that declares agents errored only after a minute: the agent's retries back
    # off for seconds once the partition ends, longer than the shared fast server's 3 s would allow.
    server = start_server(tmp_path / "server", tools_dir, *FAST, "--agent-errored-after", "60")
    env = Env(server, tools_dir, tmp_path / "agents")
    try:
        _partition(env)
    finally:
        env.close()
        server.proc.stop()
    assert not leftover_processes(tmp_path / "agents")


def _partition(env: Env) -> None:
    proxy = TcpProxy(int(env.server.url.rsplit(":", 1)[1])).start()
    try:
        env.agent(name="partitioned", address=f"http://127.0.0.1:{proxy.port}")
        ws_id, cv = env.workspace("partition", "slow_apply", seconds="8")
        run_id = env.api.create_run(ws_id, cv)["id"]
        env.wait_log(run_id, "apply", "tick 1")
        proxy.cut()
        wait_until(lambda: env.agent_status("partitioned") == "unknown", 10, what="unknown")
        assert _status(env.api, run_id) == "applying"
        proxy = TcpProxy(proxy.target_port, proxy.port).start()
        wait_until(lambda: env.agent_status("partitioned") in ("busy", "idle"), 30, what="agent back")
        run = env.api.wait_for_run(run_id, STATE_FINAL, timeout=60)
        assert run["attributes"]["status"] == "applied"
        log = env.api.read_log(run, "apply")
        assert [f"tick {i}" in log for i in range(1, 9)] == [True] * 8  # nothing lost in the partition
    finally:
        proxy.cut()


def _signal_scenario(env: Env, name: str, signals: int) -> tuple[Proc, str]:
    agent = env.agent(name=name)
    ws_id, cv = env.workspace(name, "slow_apply", seconds="5")
    run_id = env.api.create_run(ws_id, cv)["id"]
    env.wait_log(run_id, "apply", "tick 1")
    for _ in range(signals):
        agent.signal(signal.SIGTERM)
        time.sleep(0.2)  # separate signals, not one coalesced delivery
    return agent, run_id


def test_first_signal_finishes_the_job_then_deregisters(env: Env) -> None:
    agent, run_id = _signal_scenario(env, "one-signal", 1)
    assert agent.wait(60) == ExitCode.OK
    assert _status(env.api, run_id) == "applied"
    assert env.agent_status("one-signal") == "exited"


def test_second_signal_cancels_the_job_and_state_is_saved(env: Env) -> None:
    agent, run_id = _signal_scenario(env, "two-signals", 2)
    assert agent.wait(30) == ExitCode.OK
    run = env.api.wait_for_run(run_id, STATE_FINAL, timeout=10)
    assert run["attributes"]["status"] == "canceled"
    assert env.agent_status("two-signals") == "exited"
    env.no_leftovers()


def test_cancel_of_a_running_apply_interrupts_terraform_and_keeps_its_state(env: Env) -> None:
    env.agent(name="cancel")
    ws_id, cv = env.workspace("cancel", "slow_apply", seconds="60")
    run_id = env.api.create_run(ws_id, cv)["id"]
    env.wait_log(run_id, "apply", "tick 2")
    env.api.action(run_id, "cancel")
    run = env.api.wait_for_run(run_id, STATE_FINAL, timeout=30)
    assert run["attributes"]["status"] == "canceled"
    log = env.api.read_log(run, "apply")
    assert "Interrupt received" in log or "interrupt" in log.lower(), log
    # terraform stopped gracefully and saved the state it had (the resource, tainted by its provisioner).
    state = _current_state(env.api, ws_id)
    assert state["relationships"]["run"]["data"]["id"] == run_id
    env.no_leftovers()


@pytest.fixture
def fake_env(fast_server: Server, tools_dir: Path, tmp_path: Path) -> Iterator[Env]:
    tools = tools_with_fake(tools_dir, tmp_path / "tools")
    e = Env(fast_server, tools, tmp_path / "agents")
    yield e
    e.close()
    assert not leftover_processes(tmp_path / "agents")


def _fake_run(env: Env, name: str, mode: str) -> str:
    ws = env.api.create_workspace(
        env.org, name, execution_mode="agent", agent_pool_id=env.pool_id, terraform_version="9.9.9"
    )
    env.api.add_variable(ws["id"], "FAKE_MODE", mode, category="env")
    cv = env.api.upload_configuration(ws["id"], CONFIGS / "counter")
    run_id = env.api.create_run(ws["id"], cv)["id"]
    env.wait_log(run_id, "plan", "still planning 2")
    return run_id


def test_cancel_and_force_cancel_of_a_running_plan(fake_env: Env) -> None:
    fake_env.agent(name="fake")
    graceful = _fake_run(fake_env, "graceful", "normal")
    fake_env.api.action(graceful, "cancel")
    run = fake_env.api.wait_for_run(graceful, STATE_FINAL, timeout=20)
    assert run["attributes"]["status"] == "canceled"
    assert "Interrupt received" in fake_env.api.read_log(run, "plan")

    stubborn = _fake_run(fake_env, "stubborn", "ignore-int")
    with pytest.raises(APIError) as exc:
        fake_env.api.action(stubborn, "force-cancel")  # not before a cancel
    assert exc.value.status == 409
    fake_env.api.action(stubborn, "cancel")
    run = fake_env.api.run(stubborn)
    assert run["attributes"]["status"] == "planning"  # SIGINT is ignored by this terraform
    available = run["attributes"]["force-cancel-available-at"]
    assert available and available.endswith("Z")
    wait_until(
        lambda: fake_env.api.run(stubborn)["attributes"]["actions"]["is-force-cancelable"],
        10,
        what="force-cancel to be available",
    )
    wait_until(lambda: _try(lambda: fake_env.api.action(stubborn, "force-cancel")), 10, what="force-cancel")
    assert _status(fake_env.api, stubborn) == "canceled"
    fake_env.no_leftovers()  # the whole group went, the stand-in provider included


def test_third_signal_exits_at_once(fake_env: Env) -> None:
    # A terraform that ignores the second signal's SIGINT (real terraform stops at once, and the agent
    # would be gone before the third), with a stand-in provider that must not outlive the agent.
    agent = fake_env.agent("--kill-grace", "30", name="three-signals")
    _fake_run(fake_env, "three-signals", "ignore-int")
    for _ in range(3):
        agent.signal(signal.SIGTERM)
        time.sleep(0.2)  # separate signals, not one coalesced delivery
    assert agent.wait(10) == ExitCode.FORCED
    fake_env.no_leftovers()


def _try(action: Callable[[], None]) -> bool:
    try:
        action()
    except APIError as exc:
        assert exc.status == 409
        return False
    return True


def test_plan_timeout_cancels_the_run_with_its_reason(tools_dir: Path, tmp_path: Path) -> None:
    server = start_server(tmp_path / "server", tools_dir, *FAST, "--plan-timeout", "2")
    try:
        env = Env(server, tools_with_fake(tools_dir, tmp_path / "tools"), tmp_path / "agents")
        try:
            env.agent(name="slowpoke")
            run_id = _fake_run(env, "timeout", "ignore-int")
            run = env.api.wait_for_run(run_id, STATE_FINAL, timeout=20)
            assert run["attributes"]["status"] == "canceled"
            assert "exceeded its timeout of 2 s" in run["attributes"]["error-message"]
            assert "exceeded its timeout" in env.api.read_log(run, "plan")
            env.no_leftovers()
        finally:
            env.close()
    finally:
        server.proc.stop()


def test_server_killed_mid_run_then_restarted_loses_nothing(tools_dir: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    tools = tools_with_recorder(tools_dir, tmp_path / "tools", record)
    port = free_port()
    # Agents are declared errored only after a minute here: the agent's retries back off for seconds
    # while the server is away, and this test is about what survives the kill, not about liveness.
    patient = (*FAST, "--agent-errored-after", "60")
    server = start_server(tmp_path / "server", tools, *patient, port=port)
    env = Env(server, tools, tmp_path / "agents")
    try:
        env.agent(name="survivor")
        ws_id, cv = env.workspace("restart", "slow_apply", seconds="6")
        run_id = env.api.create_run(ws_id, cv)["id"]
        env.wait_log(run_id, "apply", "tick 1")
        server.proc.signal(signal.SIGKILL)
        server.proc.stop()  # reaps the killed process and closes its log
        time.sleep(1.0)  # the agent keeps applying and spooling while the server is away
        server = start_server(tmp_path / "server", tools, *patient, port=port, database_url=server.db_url)
        env.server = server
        run = env.api.wait_for_run(run_id, STATE_FINAL, timeout=90)
        assert run["attributes"]["status"] == "applied"
        for phase in ("plan", "apply"):
            url = env.api.phase(run, phase)["attributes"]["log-read-url"]
            import httpx

            stored = httpx.get(url).content
            assert stored[:1] == b"\x02" and stored[-1:] == b"\x03"
            header, _, body = stored[1:-1].partition(b"Initializing plugins and modules...\n")
            assert header.startswith(b"Terraform v1.0.3\n")
            assert body == Path(f"{record}.{phase}").read_bytes()
        env.no_leftovers()
    finally:
        env.close()
        server.proc.stop()
