"""The quick start: everything on the embedded default, end to end, with real terraform.

Starts `outpost server` (SQLite, built-in agent), bootstraps an organization, creates an agent pool
and a token, starts a separate `outpost agent` process with it, plans and applies an example through
that agent, prints the outputs, and keeps server and agent running until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from outpost.admin import bootstrap
from outpost.api_client import OutpostAPI
from outpost.tools import install_tools


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the server did not answer at {url}; see its log")


def _stream(api: OutpostAPI, run_id: str, kind: str, until: set[str]) -> dict[str, Any]:
    """Print a phase's log as it grows, until the run reaches one of `until`."""
    shown = 0
    while True:
        run = api.run(run_id)
        url = api.phase(run, kind)["attributes"]["log-read-url"]
        chunk = httpx.get(url, params={"offset": shown, "limit": 1 << 20}, timeout=10).content
        shown += len(chunk)
        text = chunk.replace(b"\x02", b"").replace(b"\x03", b"")
        if text:
            sys.stdout.write(
                "  | " + text.decode(errors="replace").replace("\n", "\n  | ").rstrip("| ").rstrip() + "\n"
            )
            sys.stdout.flush()
        if run["attributes"]["status"] in until and not chunk:
            return run
        time.sleep(0.2)


def run_demo(*, port: int, data_dir: Path, example: Path) -> int:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    print("==> laying out Terraform 1.0.3, 0.11.11 and the null provider mirror")
    tools = install_tools(data_dir / "tools")
    url = f"http://127.0.0.1:{port}"
    print("==> bootstrapping organization 'demo'")
    import asyncio

    token = asyncio.run(bootstrap(f"sqlite:///{data_dir / 'outpost.db'}", "demo", "demo@example.com"))
    (data_dir / "demo-api-token").write_text(token + "\n")
    os.chmod(data_dir / "demo-api-token", 0o600)

    print(f"==> starting outpost server on {url} (SQLite in {data_dir}, built-in agent on)")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "outpost",
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--tools-dir",
            str(tools.root),
        ],
        stdout=open(data_dir / "server.log", "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    agent: subprocess.Popen[bytes] | None = None
    try:
        _wait_http(f"{url}/api/v2/ping", server)
        api = OutpostAPI(url, token)
        pool = api.create_pool("demo", f"demo-pool-{int(time.time())}")
        token_id, pool_token = api.create_agent_token(pool["id"], "quick start agent")
        print(f"==> agent pool {pool['attributes']['name']} ({pool['id']}), token {token_id}")
        agent_env = {**os.environ, "OUTPOST_AGENT_TOKEN": pool_token}
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outpost",
                "agent",
                "--address",
                url,
                "--name",
                "demo-agent",
                "--data-dir",
                str(data_dir / "agent"),
                "--tools-dir",
                str(tools.root),
            ],
            env=agent_env,
            stdout=open(data_dir / "agent.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not [a for a in api.agents(pool["id"]) if a["attributes"]["status"] == "idle"]:
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit(f"the agent did not register; see {data_dir / 'agent.log'}")
            time.sleep(0.2)
        print(f"==> agent 'demo-agent' registered (pid {agent.pid}), status idle")

        name = f"hello-{int(time.time())}"
        ws = api.create_workspace("demo", name, execution_mode="agent", agent_pool_id=pool["id"])
        cv = api.upload_configuration(ws["id"], example)
        run = api.create_run(ws["id"], cv, message="quick start")
        print(f"==> workspace {name}: run {run['id']} queued; plan log:")
        run = _stream(api, run["id"], "plan", {"planned", "planned_and_finished", "errored", "canceled"})
        if run["attributes"]["status"] != "planned":
            print(f"the plan ended {run['attributes']['status']}")
            return 1
        print("==> confirming the apply; apply log:")
        api.action(run["id"], "apply")
        run = _stream(api, run["id"], "apply", {"applied", "errored", "canceled"})
        if run["attributes"]["status"] != "applied":
            print(f"the apply ended {run['attributes']['status']}")
            return 1
        print("==> applied. Outputs from the state Outpost holds:")
        for key, value in api.current_outputs(ws["id"]).items():
            print(f"  {key} = {value!r}")
        print()
        print(f"Outpost is running at {url}  (API token in {data_dir / 'demo-api-token'})")
        print(f"  web UI: {url}/app/  sign in with that API token, or give demo@example.com a password:")
        print(f"    outpost admin set-password --data-dir {data_dir} --email demo@example.com")
        print(f"  then watch agent 'demo-agent' under Agents and workspace {name} under Workspaces")
        print(f"  server log: {data_dir / 'server.log'}   agent log: {data_dir / 'agent.log'}")
        print("Press Ctrl-C to stop the server and the agent.")
        sys.stdout.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        print("stopping...")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in (agent, server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
