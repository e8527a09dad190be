"""End to end with real processes: a server that serves a releases mirror and /metrics, an agent that
downloads, verifies and runs the Terraform a workspace pins, logs JSON with its ids and serves its own
metrics; refused releases; the version handshake."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from outpost import __version__
from outpost.admin import bootstrap
from outpost.agent.exitcodes import ExitCode
from outpost.api_client import APIError, OutpostAPI
from tests.conftest import EXAMPLES
from tests.operations.conftest import GOOD, OTHER_SIGNER, TAMPERED_ARCHIVE
from tests.support.processes import OUTPOST, Proc, Server, clean_env, free_port, start_server
from tests.support.releases import SigningKey

pytestmark = pytest.mark.e2e

METRICS_TOKEN = "metrics-token-for-the-test"


@dataclass
class Setup:
    server: Server
    api: OutpostAPI
    org: str
    pool_id: str
    token: str
    agent: Proc
    agent_dir: Path
    metrics_port: int


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, tools_dir: Path, releases_dir: Path, release_key: SigningKey
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("ops")
    server = start_server(
        root / "server", tools_dir, "--no-builtin-agent", "--releases-dir", str(releases_dir),
        "--metrics-token", METRICS_TOKEN,
    )  # fmt: skip
    api = OutpostAPI(server.url, asyncio.run(bootstrap(server.db_url, "ops", "ops@example.com")))
    pool_id = api.create_pool("ops", "pool")["id"]
    _, token = api.create_agent_token(pool_id, "ops token")
    empty = root / "no-terraform"
    empty.mkdir()
    metrics_port = free_port()
    agent_dir = root / "agent"
    # No terraform installed: the pinned version must come from the server's mirror, verified.
    agent = Proc(
        [
            *OUTPOST, "agent", "--address", server.url, "--name", "downloader", "--data-dir", str(agent_dir),
            "--terraform-dir", str(empty), "--provider-mirror", str(tools_dir / "providers"),
            "--releases-url", f"{server.url}/releases", "--releases-key", str(release_key.public),
            "--concurrency", "2", "--log-json", "--metrics-port", str(metrics_port),
        ],
        root / "agent.log",
        env=clean_env(OUTPOST_AGENT_TOKEN=token),
    ).start()  # fmt: skip
    try:
        yield Setup(server, api, "ops", pool_id, token, agent, agent_dir, metrics_port)
    finally:
        agent.stop()
        api.close()
        server.proc.stop()


@pytest.fixture(scope="module")
def applied(setup: Setup) -> dict[str, object]:
    """One workspace pinned to 1.0.3, planned and applied on the downloading agent."""
    ws = setup.api.create_workspace(
        setup.org, "pinned", execution_mode="agent", agent_pool_id=setup.pool_id, terraform_version=GOOD,
        auto_apply=True,
    )  # fmt: skip
    cv = setup.api.upload_configuration(ws["id"], EXAMPLES / "hello")
    run = setup.api.wait_for_run(setup.api.create_run(ws["id"], cv)["id"], {"applied", "errored"}, timeout=240)
    return {"workspace": ws, "run": run}


def test_pinned_version_is_downloaded_verified_and_used(
    setup: Setup, applied: dict[str, object], release_key: SigningKey
) -> None:
    run = applied["run"]
    assert isinstance(run, dict)
    plan_log = setup.api.read_log(run, "plan")
    assert run["attributes"]["status"] == "applied", plan_log + setup.agent.output()[-3000:]
    assert f"Downloading Terraform {GOOD} (linux_amd64) from {setup.server.url}/releases/terraform/{GOOD}/" in plan_log
    assert f"signed by {release_key.fingerprint}" in plan_log
    assert f"Terraform v{GOOD}" in plan_log and "Plan: 1 to add" in plan_log
    # The apply reused the cached binary.
    apply_log = setup.api.read_log(run, "apply")
    assert "Downloading" not in apply_log and "Apply complete! Resources: 1 added" in apply_log
    assert (setup.agent_dir / "cache" / "terraform" / GOOD / "terraform").is_file()


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (TAMPERED_ARCHIVE, "The archive is corrupt or was tampered with"),
        (OTHER_SIGNER, "is not valid for the release key"),
    ],
)
def test_bad_releases_error_the_run_with_the_reason(setup: Setup, version: str, reason: str) -> None:
    ws = setup.api.create_workspace(
        setup.org, f"bad-{version.replace('.', '-')}", execution_mode="agent", agent_pool_id=setup.pool_id,
        terraform_version=version,
    )  # fmt: skip
    cv = setup.api.upload_configuration(ws["id"], EXAMPLES / "hello")
    run = setup.api.wait_for_run(setup.api.create_run(ws["id"], cv)["id"], {"errored", "planned"}, timeout=120)
    log = setup.api.read_log(run, "plan")
    assert run["attributes"]["status"] == "errored", log
    assert f"Error: Refusing Terraform {version}" in log and reason in log, log
    assert reason in run["attributes"]["error-message"]
    assert "a tampered terraform ran" not in log
    assert not (setup.agent_dir / "cache" / "terraform" / version).exists()


def test_terraform_0_11_is_refused_for_agent_mode(setup: Setup) -> None:
    with pytest.raises(APIError) as refused:
        setup.api.create_workspace(
            setup.org, "ancient", execution_mode="agent", agent_pool_id=setup.pool_id, terraform_version="0.11.11"
        )
    assert refused.value.status == 422
    assert "0.11.11 cannot use agent execution mode" in refused.value.errors[0]["detail"]
    ws = setup.api.create_workspace(setup.org, "moving", execution_mode="agent", agent_pool_id=setup.pool_id)
    with pytest.raises(APIError) as refused:
        setup.api.update_workspace(ws["id"], terraform_version="0.11.11")
    assert refused.value.status == 422


def test_mirror_and_metrics_require_credentials(setup: Setup) -> None:
    path = f"/releases/terraform/{GOOD}/terraform_{GOOD}_SHA256SUMS"
    assert httpx.get(setup.server.url + path).status_code == 401
    assert httpx.get(setup.server.url + path, headers={"Authorization": f"Bearer {setup.token}"}).status_code == 401
    user = httpx.get(setup.server.url + path, headers={"Authorization": setup.api.http.headers["Authorization"]})
    assert user.status_code == 200 and user.text.endswith(f"terraform_{GOOD}_linux_amd64.zip\n")
    escape = httpx.get(setup.server.url + "/releases/../outpost.db", headers=dict(setup.api.http.headers))
    assert escape.status_code == 404
    assert httpx.get(setup.server.url + "/metrics").status_code == 401
    wrong = httpx.get(setup.server.url + "/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["errors"][0]["status"] == "401"


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matching = [v for got, v in samples.get(name, []) if all(got.get(k) == want for k, want in labels.items())]
    assert len(matching) == 1, f"{name} {labels}: {samples.get(name)}"
    return matching[0]


def test_server_metrics_after_a_run(setup: Setup, applied: dict[str, object]) -> None:
    resp = httpx.get(setup.server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples = _samples(resp.text)
    pool = {"pool": setup.pool_id, "pool_name": "pool", "organization": setup.org}
    assert (
        _value(samples, "outpost_agents", status="idle", **pool)
        + _value(samples, "outpost_agents", status="busy", **pool)
        == 1
    )
    assert _value(samples, "outpost_agents", status="errored", **pool) == 0
    assert _value(samples, "outpost_jobs_queued", **pool) == 0
    assert _value(samples, "outpost_runs", organization=setup.org, status="applied") >= 1
    assert _value(samples, "outpost_dispatch_latency_seconds_count", pool=setup.pool_id) >= 2
    assert _value(samples, "outpost_job_duration_seconds_count", phase="plan", outcome="succeeded") >= 1
    assert _value(samples, "outpost_job_duration_seconds_count", phase="apply", outcome="succeeded") >= 1
    # A quick dispatch: the agent was waiting in a long-poll (this is a generous bound, not a benchmark).
    latency = _value(samples, "outpost_dispatch_latency_seconds_sum", pool=setup.pool_id)
    assert latency / _value(samples, "outpost_dispatch_latency_seconds_count", pool=setup.pool_id) < 5


def test_agent_metrics_after_a_run(setup: Setup, applied: dict[str, object]) -> None:
    text = httpx.get(f"http://127.0.0.1:{setup.metrics_port}/metrics").text
    samples = _samples(text)
    assert _value(samples, "outpost_agent_jobs_total", phase="plan", outcome="succeeded") >= 1
    assert _value(samples, "outpost_agent_jobs_total", phase="apply", outcome="succeeded") >= 1
    assert _value(samples, "outpost_agent_terraform_downloads_total", result="verified") == 1
    assert _value(samples, "outpost_agent_job_duration_seconds_count", phase="plan") >= 1


def test_json_logs_carry_the_ids(setup: Setup, applied: dict[str, object]) -> None:
    run = applied["run"]
    workspace = applied["workspace"]
    assert isinstance(run, dict) and isinstance(workspace, dict)
    entries = [json.loads(line) for line in setup.agent.output().splitlines() if line.startswith("{")]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    agent_id = setup.api.agents(setup.pool_id)[0]["id"]
    mine = [e for e in entries if e.get("run_id") == run["id"]]
    finished = [e for e in mine if "finished: succeeded" in e["message"]]
    assert len(finished) == 2, mine  # the plan job and the apply job
    for entry in finished:
        assert entry["agent_id"] == agent_id
        assert entry["workspace_id"] == workspace["id"]
        assert entry["job_id"] in entry["message"]
    assert any("downloaded and verified" in e["message"] and e.get("run_id") == run["id"] for e in mine)


@pytest.mark.parametrize(("protocol", "age"), [(0, "too old"), (99, "too new")])
def test_an_agent_of_another_protocol_is_told_what_to_install(
    setup: Setup, tmp_path: Path, protocol: int, age: str
) -> None:
    """A real agent process built with another protocol number (as an older or newer release would be)."""
    code = (
        "import sys, outpost; "
        f"outpost.AGENT_PROTOCOL_VERSION = {protocol}; "
        "from outpost.cli import main; sys.argv[0] = 'outpost'; main()"
    )
    agent = Proc(
        [sys.executable, "-c", code, "agent", "--address", setup.server.url, "--data-dir", str(tmp_path / "a")],
        tmp_path / "agent.log",
        env=clean_env(OUTPOST_AGENT_TOKEN=setup.token),
    ).start()
    try:
        assert agent.wait(30) == ExitCode.PROTOCOL_MISMATCH
    finally:
        agent.stop()
    output = agent.output()
    assert f"agent protocol {protocol}) is {age} for this server" in output, output
    assert f"Install Outpost {__version__} on the agent's machine." in output


def test_metrics_are_off_without_a_token(server: Server) -> None:
    """The shared server has no metrics token: /metrics says how to turn it on, and shows nothing."""
    resp = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer anything"})
    assert resp.status_code == 404
    assert "OUTPOST_METRICS_TOKEN" in resp.json()["errors"][0]["detail"]
    assert "outpost_" not in resp.text
