"""Typed settings, built once at the edge (flags and OUTPOST_* variables) and passed in.

Nothing below the CLI reads the environment; the only exception is the agent's job environment, which
is built from an explicit allow-list in `outpost.agent.environment`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".outpost")
    database_url: str | None = None
    # Connections each server process keeps to PostgreSQL (it may open as many again under bursts).
    database_pool_size: int = 10
    external_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    builtin_agent: bool = True
    builtin_agent_concurrency: int = 2
    tools_dir: Path | None = None
    migrate: bool = True
    # Agent protocol timings (seconds).
    heartbeat_interval: float = 10.0
    long_poll_timeout: float = 30.0
    agent_unknown_after: float = 30.0
    agent_errored_after: float = 300.0
    job_lease: float = 60.0
    monitor_interval: float = 2.0
    force_cancel_cooloff: float = 10.0
    plan_timeout: float = 2 * 3600.0
    apply_timeout: float = 24 * 3600.0
    log_level: str = "info"
    log_json: bool = False
    # Operations (docs/operations.md): a Terraform releases mirror for agents, and who may scrape /metrics.
    releases_dir: Path | None = None
    metrics_token: str | None = None
    # Security (docs/security.md): the key that encrypts secrets at rest (else a key file in the data dir),
    # and the sandbox of the built-in agent's runs.
    encryption_key: str | None = None
    encryption_key_file: Path | None = None
    builtin_agent_sandbox: str = "none"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'outpost.db').resolve()}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


@dataclass(frozen=True)
class AgentConfig:
    address: str
    token: str
    name: str | None = None
    single: bool = False
    concurrency: int = 1
    data_dir: Path = Path(".outpost-agent")
    terraform_dir: Path | None = None
    provider_mirror: Path | None = None
    ca_cert: Path | None = None
    log_level: str = "info"
    log_json: bool = False
    # Host environment variables passed through to terraform (proxies, certificates); never secrets.
    passthrough_env: dict[str, str] = field(default_factory=dict)
    # Seconds between SIGINT and SIGKILL of a canceled terraform's process group.
    kill_grace: float = 10.0
    # Operations (docs/operations.md). Terraform downloads are verified against `releases_key` and are
    # off without one; caches (terraform binaries, provider plugins) default to <data_dir>/cache.
    releases_url: str = "https://releases.hashicorp.com"
    releases_key: Path | None = None
    cache_dir: Path | None = None
    provider_cache: bool = True
    provider_network_mirrors: tuple[str, ...] = ()
    provider_direct: bool = False
    # Hook timeouts in seconds: "" is every hook's default, "pre-plan" and the like override it.
    hook_timeouts: dict[str, float] = field(default_factory=dict)
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    # Per-run isolation (docs/security.md): "none" or "bwrap"; the uid runs get ("unprivileged" or "root");
    # limits per run (None: no limit; with bwrap, defaults apply).
    sandbox: str = "none"
    run_as: str = "unprivileged"
    memory_limit_mb: int | None = None
    cpu_limit: float | None = None
    pids_limit: int | None = None
    sandbox_uid_base: int = 1_000_000

    @property
    def cache_root(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    @property
    def hooks_dir(self) -> Path:
        return self.data_dir / "hooks"
