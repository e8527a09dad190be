"""The real terraform 1.0.3 CLI, unchanged, with `backend "remote"` pointing at Outpost over HTTPS.

`plan` and `apply` are remote operations: the CLI uploads the configuration, Outpost queues the run for
the pool's separate `outpost agent`, and the CLI streams the plan and apply logs to its own stdout while
the agent runs terraform. `output` and `state pull` read the state Outpost holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.compat.conftest import CLISetup

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("terraform-cli")]

WORKSPACE = "cli"
# The provisioner's pause makes the apply long enough to tell streamed output from output shown at the end.
MAIN_TF = """
terraform {
  backend "remote" {
    hostname     = "%(host)s"
    organization = "%(org)s"
    workspaces {
      name = "%(workspace)s"
    }
  }
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }
}

variable "greeting" {
  type    = string
  default = "Hello from the terraform CLI"
}

resource "null_resource" "hello" {
  triggers = {
    greeting = var.greeting
  }
  provisioner "local-exec" {
    command = "echo provisioner-started && sleep 4 && echo provisioner-finished"
  }
}

output "greeting" {
  value = var.greeting
}

output "resource_id" {
  value = null_resource.hello.id
}
"""


@dataclass
class Result:
    code: int
    chunks: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return b"".join(c for _, c in self.chunks).decode(errors="replace")

    def seen_at(self, needle: str) -> float:
        """The wall-clock time at which `needle` had reached terraform's stdout."""
        so_far = b""
        for at, chunk in self.chunks:
            so_far += chunk
            if needle.encode() in so_far:
                return at
        raise AssertionError(f"{needle!r} not in the output:\n{self.text}")


class Terraform:
    def __init__(self, binary: Path, workdir: Path, env: dict[str, str]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.env = env

    def __call__(self, *args: str, answer: str | None = None, timeout: float = 120) -> Result:
        proc = subprocess.Popen(
            [str(self.binary), *args],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdin is not None and proc.stdout is not None
        result = Result(code=-1)
        fd = proc.stdout.fileno()

        def read() -> None:
            # Raw reads, not lines: the confirmation prompt ends without a newline.
            while chunk := os.read(fd, 65536):
                result.chunks.append((time.time(), chunk))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        try:
            if answer is not None:
                while "Enter a value:" not in result.text:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"terraform {args[0]} never asked for confirmation:\n{result.text}")
                    time.sleep(0.05)
                proc.stdin.write(answer.encode())
                proc.stdin.flush()
            proc.stdin.close()
            result.code = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"terraform {' '.join(args)} timed out:\n{result.text}") from None
        finally:
            reader.join(10)
            proc.stdout.close()
        return result


def _cli(cli_setup: CLISetup, tools_dir: Path, base: Path, workspace: str) -> Terraform:
    """A directory whose configuration uses `backend "remote"` with Outpost's workspace `workspace`."""
    home, workdir = base / "home", base / "config"
    home.mkdir()
    workdir.mkdir()
    (workdir / "main.tf").write_text(
        MAIN_TF % {"host": cli_setup.server.host, "org": cli_setup.org, "workspace": workspace}
    )
    # Terraform 1.0.3 takes a token only from the CLI configuration (TF_TOKEN_* came in 1.2).
    rc = base / "terraformrc"
    rc.write_text(
        f'credentials "{cli_setup.server.host}" {{\n  token = "{cli_setup.token}"\n}}\n'
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{tools_dir / "providers"}"\n  }}\n'
        "}\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SSL_CERT_FILE": str(cli_setup.server.ca_file),
        "TF_CLI_CONFIG_FILE": str(rc),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
    }
    return Terraform(tools_dir / "terraform" / "1.0.3" / "terraform", workdir, env)


@pytest.fixture(scope="module")
def terraform(cli_setup: CLISetup, tools_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terraform]:
    # The workspace exists before init, in agent mode, on the pool whose agent is running.
    cli_setup.api.create_workspace(cli_setup.org, WORKSPACE, execution_mode="agent", agent_pool_id=cli_setup.pool_id)
    yield _cli(cli_setup, tools_dir, tmp_path_factory.mktemp("cli"), WORKSPACE)


def _stamp(run: dict[str, object], key: str) -> float:
    stamps = run["attributes"]["status-timestamps"]  # type: ignore[index]
    return datetime.fromisoformat(stamps[key].replace("Z", "+00:00")).timestamp()


def test_remote_plan_apply_output_and_state_pull(cli_setup: CLISetup, terraform: Terraform) -> None:
    api, agent_line = cli_setup.api, f"Outpost agent {cli_setup.agent_name} ({cli_setup.agent_id})"
    ws = api.request("GET", f"/organizations/{cli_setup.org}/workspaces/{WORKSPACE}")["data"]

    init = terraform("init", "-input=false", "-no-color")
    assert init.code == 0, init.text
    assert 'Successfully configured the backend "remote"!' in init.text
    assert "Terraform has been successfully initialized!" in init.text

    # A speculative plan: the configuration is uploaded, planned on the agent, and the log shown here.
    plan = terraform("plan", "-input=false", "-no-color")
    assert plan.code == 0, plan.text
    assert "Running plan in the remote backend." in plan.text
    assert f"on linux_amd64 ({agent_line})" in plan.text  # executed by the separate agent
    assert "null_resource.hello will be created" in plan.text
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.text
    (speculative,) = api.request("GET", f"/workspaces/{ws['id']}/runs")["data"]
    assert speculative["attributes"]["status"] == "planned_and_finished"
    assert speculative["attributes"]["plan-only"] is True

    # The apply asks for confirmation; the answer goes in on stdin.
    apply = terraform("apply", "-no-color", answer="yes\n")
    assert apply.code == 0, apply.text
    assert "Do you want to perform these actions in workspace" in apply.text
    assert "null_resource.hello will be created" in apply.text
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in apply.text
    # The apply log's first three lines are the header the CLI drops; the rest comes through.
    assert apply.text.count(f"on linux_amd64 ({agent_line})") == 1  # the plan's header only
    run = api.request("GET", f"/workspaces/{ws['id']}/runs")["data"][0]
    assert run["attributes"]["status"] == "applied" and run["attributes"]["source"] == "terraform"
    log_url = api.phase(run, "apply")["attributes"]["log-read-url"]
    apply_log = httpx.get(log_url, verify=cli_setup.server.ssl_context()).text.strip("\x02\x03")
    assert apply_log.splitlines()[1] == f"on linux_amd64 ({agent_line})"

    # Streamed while produced: the provisioner's first line reached terraform's stdout seconds before its
    # last, and before Outpost marked the apply finished.
    # (The needles name the provisioner's output lines, not its "Executing:" line, which holds both words.)
    started = apply.seen_at("(local-exec): provisioner-started")
    finished = apply.seen_at("(local-exec): provisioner-finished")
    assert finished - started > 2, [(round(t, 2), c) for t, c in apply.chunks]
    assert started < _stamp(run, "applied-at"), (started, run["attributes"]["status-timestamps"])

    outputs = terraform("output", "-no-color")
    assert outputs.code == 0, outputs.text
    assert 'greeting = "Hello from the terraform CLI"' in outputs.text
    as_json = terraform("output", "-json")
    assert as_json.code == 0, as_json.text
    values = {k: v["value"] for k, v in json.loads(as_json.text).items()}
    assert values["greeting"] == "Hello from the terraform CLI"
    assert values == api.current_outputs(ws["id"])

    pulled = terraform("state", "pull")
    assert pulled.code == 0, pulled.text
    state = json.loads(pulled.text)
    current = api.request("GET", f"/workspaces/{ws['id']}/current-state-version")["data"]["attributes"]
    assert (state["serial"], state["lineage"]) == (current["serial"], current["lineage"])
    assert [r["type"] for r in state["resources"]] == ["null_resource"]

    # Nothing changed: the second apply plans, finds nothing to do, and asks nothing.
    again = terraform("apply", "-no-color")
    assert again.code == 0, again.text
    assert "No changes." in again.text and "Enter a value:" not in again.text
    latest = api.request("GET", f"/workspaces/{ws['id']}/runs")["data"][0]
    assert latest["attributes"]["status"] == "planned_and_finished"
    assert latest["attributes"]["has-changes"] is False


def test_local_execution_stores_state_in_outpost_under_a_lock(
    cli_setup: CLISetup, tools_dir: Path, tmp_path: Path
) -> None:
    """`local` execution mode: terraform runs here and Outpost only holds the state. The CLI locks the
    workspace, pushes each new state version (serial, md5, lineage, base64 state) and unlocks."""
    api = cli_setup.api
    ws = api.create_workspace(cli_setup.org, "cli-local", execution_mode="local")
    terraform = _cli(cli_setup, tools_dir, tmp_path, "cli-local")
    assert terraform("init", "-input=false", "-no-color").code == 0

    first = terraform("apply", "-auto-approve", "-no-color", "-var", "greeting=first")
    assert first.code == 0, first.text
    assert "Running apply in the remote backend" not in first.text  # it ran here, not on an agent
    assert "provisioner-finished" in first.text
    assert api.request("GET", f"/workspaces/{ws['id']}/runs")["data"] == []
    current = api.request("GET", f"/workspaces/{ws['id']}/current-state-version")["data"]["attributes"]
    pulled = json.loads(terraform("state", "pull").text)
    assert (pulled["serial"], pulled["lineage"]) == (current["serial"], current["lineage"])
    assert api.current_outputs(ws["id"])["greeting"] == "first"
    assert api.request("GET", f"/workspaces/{ws['id']}")["data"]["attributes"]["locked"] is False

    second = terraform("apply", "-auto-approve", "-no-color", "-var", "greeting=second")
    assert second.code == 0, second.text
    assert "1 added, 0 changed, 1 destroyed" in second.text  # the trigger changed: replaced
    versions = api.request("GET", f"/workspaces/{ws['id']}/state-versions")["data"]
    assert versions[0]["attributes"]["serial"] > current["serial"]
    assert api.current_outputs(ws["id"])["greeting"] == "second"
    assert api.request("GET", f"/workspaces/{ws['id']}")["data"]["attributes"]["locked"] is False
