"""Pure rules of the operations features: proxies, hook settings and exports, the CLI configuration,
checksums, JSON log ids, and the metrics collector's output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from outpost import logcontext
from outpost.agent.hooks import DEFAULT_TIMEOUT, parse_exports, parse_timeouts, timeout_for
from outpost.agent.network import bypasses_proxy, proxy_for, redact
from outpost.agent.providers import check_mirror_url, cli_config
from outpost.agent.releases import _expected_sum
from outpost.config import AgentConfig
from outpost.logging_setup import JSONFormatter
from outpost.server.metrics import SnapshotCollector
from outpost.store.metrics import PoolLabels, Snapshot

# --- proxies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("outpost.example.com", 443, "example.com", True),  # a domain covers its subdomains
        ("example.com", 443, "example.com", True),
        ("notexample.com", 443, "example.com", False),
        ("outpost.example.com", 443, ".example.com", True),
        ("example.com", 443, ".example.com", False),  # a leading dot: subdomains only
        ("10.1.2.3", 8080, "10.0.0.0/8", True),  # CIDR ranges, as terraform (Go) reads them
        ("192.168.1.1", 8080, "10.0.0.0/8", False),
        ("127.0.0.1", 8080, "127.0.0.1:8080", True),  # an entry may name a port
        ("127.0.0.1", 8443, "127.0.0.1:8080", False),
        ("anything", 1, "*", True),
        ("outpost.internal", 443, " , other.internal ,", False),
        ("OUTPOST.Example.COM", 443, "example.com", True),
    ],
)
def test_no_proxy_rules(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypass


def test_proxy_for_picks_by_scheme_and_honours_no_proxy() -> None:
    env = {"HTTPS_PROXY": "http://u:p@proxy:3128", "http_proxy": "http://plain:3128", "NO_PROXY": "internal"}
    assert proxy_for("https://outpost.example.com", env) == "http://u:p@proxy:3128"
    assert proxy_for("http://outpost.example.com:8080", env) == "http://plain:3128"
    assert proxy_for("https://db.internal", env) is None
    assert proxy_for("https://outpost.example.com", {}) is None
    # The lower-case spelling wins, as with curl.
    assert proxy_for("https://x.test", {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"}) == (
        "http://lower:1"
    )


def test_redact_hides_only_the_password() -> None:
    assert redact("http://outpost:s3cret@proxy.example.com:3128") == "http://outpost:***@proxy.example.com:3128"
    assert redact("http://proxy:3128") == "http://proxy:3128"
    assert redact(None) == "none"


# --- hooks -----------------------------------------------------------------------------------------


def test_hook_timeouts() -> None:
    timeouts = parse_timeouts(["90", "pre-apply=300", "post-plan=0.5"])
    assert timeout_for(timeouts, "pre-apply") == 300
    assert timeout_for(timeouts, "post-plan") == 0.5
    assert timeout_for(timeouts, "pre-plan") == 90
    assert timeout_for({}, "pre-plan") == DEFAULT_TIMEOUT == 60


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("601", "at most 600"),
        ("0", "more than 0"),
        ("pre-destroy=10", "'pre-destroy' is not a hook"),
        ("soon", "is not SECONDS or HOOK=SECONDS"),
    ],
)
def test_bad_hook_timeouts_are_refused(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_timeouts([value])


def test_hook_exports() -> None:
    text = "# a comment\n\nAWS_REGION=eu-west-1\nTOKEN=a=b=c\n  SPACED=yes  \nEMPTY=\n"
    assert parse_exports(text) == {"AWS_REGION": "eu-west-1", "TOKEN": "a=b=c", "SPACED": "yes", "EMPTY": ""}
    with pytest.raises(ValueError, match="line 2 is not KEY=value"):
        parse_exports("GOOD=1\nnot an assignment\n")
    with pytest.raises(ValueError, match="line 1 is not KEY=value"):
        parse_exports("1BAD=x\n")
    with pytest.raises(ValueError, match="OUTPOST_AGENT_TOKEN: OUTPOST_\\* variables are the agent's own"):
        parse_exports("OUTPOST_AGENT_TOKEN=stolen\n")


# --- terraform CLI configuration ---------------------------------------------------------------------


def _config(tmp_path: Path, **kwargs: object) -> AgentConfig:
    return AgentConfig(address="http://x", token="t", data_dir=tmp_path / "agent", **kwargs)  # type: ignore[arg-type]


def test_cli_config_with_every_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "provider mirror" / 'with "quotes"'
    config = _config(
        tmp_path,
        provider_mirror=mirror,
        provider_network_mirrors=("https://mirror.example.com/providers/",),
        provider_direct=True,
    )
    text = cli_config(config)
    cache = config.cache_root / "providers"
    assert text.startswith(f"plugin_cache_dir = {json.dumps(str(cache))}\n") and cache.is_dir()
    assert f"path = {json.dumps(str(mirror))}" in text
    assert 'url = "https://mirror.example.com/providers/"' in text
    assert text.index("filesystem_mirror") < text.index("network_mirror") < text.index("direct {}")
    assert text.count("{") == text.count("}")


def test_cli_config_without_mirrors_or_cache(tmp_path: Path) -> None:
    assert cli_config(_config(tmp_path, provider_cache=False)).strip() == ""
    # --provider-direct alone changes nothing: without mirrors terraform goes to the registries anyway.
    assert "provider_installation" not in cli_config(_config(tmp_path, provider_direct=True))


def test_network_mirror_urls() -> None:
    assert check_mirror_url("https://m.example.com/p") == "https://m.example.com/p/"
    with pytest.raises(ValueError, match="must be an https:// URL"):
        check_mirror_url("http://m.example.com/")


# --- release checksums -----------------------------------------------------------------------------


def test_expected_sum_finds_the_exact_archive() -> None:
    good = "a" * 64
    sums = f"{'b' * 64}  terraform_1.0.3_linux_amd64.zip.extra\n{good}  terraform_1.0.3_linux_amd64.zip\n"
    assert _expected_sum(sums, "terraform_1.0.3_linux_amd64.zip") == good
    assert (
        _expected_sum(sums.upper().replace("TERRAFORM_1.0.3_LINUX_AMD64.ZIP", "x"), "terraform_1.0.3_linux_amd64.zip")
        is None
    )
    assert _expected_sum(f"{good} *terraform_1.0.3_linux_amd64.zip\n", "terraform_1.0.3_linux_amd64.zip") == good
    assert _expected_sum("nothex  terraform_1.0.3_linux_amd64.zip\n", "terraform_1.0.3_linux_amd64.zip") is None


# --- JSON logs -------------------------------------------------------------------------------------


def test_json_logs_carry_the_ids_of_their_task() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("outpost.test.logcontext")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    async def job(job_id: str, run_id: str) -> None:
        logcontext.bind(job_id=job_id, run_id=run_id, workspace_id=f"ws-of-{run_id}")
        await asyncio.sleep(0)
        logger.info("inside %s", job_id)

    async def agent() -> None:
        logcontext.bind(agent_id="agent-1")
        await asyncio.gather(job("job-a", "run-a"), job("job-b", "run-b"))
        logger.info("outside")

    try:
        asyncio.run(agent())
    finally:
        logger.removeHandler(handler)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_message = {e["message"]: e for e in entries}
    assert by_message["inside job-a"]["job_id"] == "job-a" and by_message["inside job-a"]["run_id"] == "run-a"
    assert by_message["inside job-b"]["workspace_id"] == "ws-of-run-b"
    assert all(e["agent_id"] == "agent-1" for e in entries)
    assert "job_id" not in by_message["outside"], "a job's ids stay in its own task"


# --- the metrics collector -------------------------------------------------------------------------


def test_snapshot_collector_reports_every_status_with_zeros() -> None:
    snap = Snapshot(
        pools=[PoolLabels("apool-1", "edge", "acme"), PoolLabels("apool-builtin", "builtin", "")],
        agents={("apool-1", "idle"): 2, ("apool-1", "exited"): 1},
        queued={"apool-1": 3},
        running={"apool-1": 1},
        runs={("acme", "applied"): 4, ("acme", "errored"): 1},
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    edge = (("organization", "acme"), ("pool", "apool-1"), ("pool_name", "edge"))

    def value(name: str, *labels: tuple[str, str]) -> float:
        return samples[(name, tuple(sorted((*edge, *labels))))]

    assert value("outpost_agents", ("status", "idle")) == 2
    assert value("outpost_agents", ("status", "busy")) == 0
    assert value("outpost_agents", ("status", "exited")) == 1
    assert value("outpost_jobs_queued") == 3 and value("outpost_jobs_active") == 1
    assert samples[("outpost_runs", (("organization", "acme"), ("status", "applied")))] == 4
    assert samples[("outpost_runs", (("organization", "acme"), ("status", "planning")))] == 0
    assert len([k for k in samples if k[0] == "outpost_agents"]) == 2 * 5  # every pool, every status
