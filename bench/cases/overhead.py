"""Agent overhead: a plan and apply of N null_resources through Outpost (a real `outpost agent`, real
terraform), divided by the same `terraform init`, `plan -out` and `apply` run directly."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.servers import OUTPOST, Proc, spawn
from bench.stats import median
from outpost.api_client import OutpostAPI


def configuration(count: int) -> str:
    return (
        'terraform {\n  required_providers {\n    null = {\n      source  = "hashicorp/null"\n'
        '      version = "2.1.2"\n    }\n  }\n}\n\n'
        f'resource "null_resource" "r" {{\n  count = {count}\n  triggers = {{\n    index = count.index\n  }}\n}}\n\n'
        'output "ids" {\n  value = length(null_resource.r[*].id)\n}\n'
    )


def direct(tools: Path, workdir: Path) -> float:
    """init, plan -out, apply of the saved plan: what the agent runs, without Outpost around it."""
    rc = workdir.parent / f"{workdir.name}.tfrc"
    rc.write_text(f'provider_installation {{\n  filesystem_mirror {{\n    path = "{tools / "providers"}"\n  }}\n}}\n')
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": str(rc),
    }
    tf = str(tools / "terraform" / "1.0.3" / "terraform")
    begin = time.perf_counter()
    for argv in (
        ["init", "-input=false", "-no-color"],
        ["plan", "-input=false", "-no-color", "-out=plan.tfplan"],
        ["apply", "-input=false", "-no-color", "plan.tfplan"],
    ):
        subprocess.run([tf, *argv], cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - begin


def start_agent(url: str, pool_token: str, tools: Path, data_dir: Path) -> Proc:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env["OUTPOST_AGENT_TOKEN"] = pool_token
    argv = [
        *OUTPOST,
        "agent",
        "--address",
        url,
        "--data-dir",
        str(data_dir),
        "--tools-dir",
        str(tools),
        "--name",
        "bench",
    ]
    return spawn(argv, data_dir.parent / f"{data_dir.name}.log", env)


def wait_idle(api: OutpostAPI, pool_id: str, agent: Proc) -> None:
    deadline = time.monotonic() + 60
    while not [a for a in api.agents(pool_id) if a["attributes"]["status"] == "idle"]:
        if agent.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the agent did not register; see {agent.log}")
        time.sleep(0.05)


def wait_final(api: OutpostAPI, run_id: str, timeout: float = 600, interval: float = 0.02) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = str(api.run(run_id)["attributes"]["status"])
        if status in ("applied", "errored", "canceled", "planned_and_finished"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is still {status}")
        time.sleep(interval)


def finished_at(api: OutpostAPI, run_id: str, status: str) -> float:
    """When the run reached `status`, by the server's own stamp (milliseconds, same machine's clock)."""
    stamp = api.run(run_id)["attributes"]["status-timestamps"][f"{status.replace('_', '-')}-at"]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def run(url: str, org: str, token: str, tools: Path, work: Path, *, sizes: list[int], rounds: int) -> dict[str, Any]:
    api = OutpostAPI(url, token)
    pool = api.create_pool(org, "overhead")
    _, pool_token = api.create_agent_token(pool["id"], "overhead")
    agent = start_agent(url, pool_token, tools, work / "agent")
    results: dict[str, Any] = {}
    try:
        wait_idle(api, pool["id"], agent)
        for size in sizes:
            source = work / f"config-{size}"
            source.mkdir(parents=True, exist_ok=True)
            (source / "main.tf").write_text(configuration(size))
            through, plain = [], []
            for i in range(rounds):
                # Side by side, alternating, each from an empty state.
                workdir = work / f"direct-{size}-{i}"
                workdir.mkdir()
                (workdir / "main.tf").write_text(configuration(size))
                plain.append(direct(tools, workdir))
                ws = api.create_workspace(
                    org, f"overhead-{size}-{i}", execution_mode="agent", agent_pool_id=pool["id"], auto_apply=True
                )
                cv = api.upload_configuration(ws["id"], source)
                begin = time.time()
                run_id = api.create_run(ws["id"], cv)["id"]
                # Polled slowly, and timed by the server's stamp: a fast poll would take CPU from terraform
                # (this machine has two cores), and the direct run has no such neighbour.
                status = wait_final(api, run_id, interval=0.5)
                if status != "applied":
                    raise RuntimeError(f"run {run_id} ended {status}")
                through.append(finished_at(api, run_id, status) - begin)
            results[str(size)] = {
                "resources": size,
                "through_outpost_s": round(median(through), 2),
                "direct_s": round(median(plain), 2),
                "ratio": round(median(through) / median(plain), 3),
                "rounds": rounds,
            }
    finally:
        agent.stop()
        api.close()
    return results
