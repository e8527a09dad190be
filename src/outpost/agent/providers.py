"""Provider installation: the terraform CLI configuration (mirrors, the plugin cache) and the cache lock.

The agent keeps one provider plugin cache (`<cache>/providers`, terraform's `plugin_cache_dir`), so a
provider is fetched once per agent rather than once per job. Terraform documents that directory as
unsafe for concurrent writers: two `terraform init`s installing the same provider can interleave their
writes, and one may run a half-written plugin. Only `init` writes to the cache (later commands run the
plugins through links into it), so every `init` runs under an exclusive file lock on the cache: inits
take turns (quick once the cache is warm), while plans and applies of other jobs run on undisturbed. The
lock is a flock (locks.py), so agents on one host that share a `--cache-dir` take turns as well.

Mirrors: a filesystem mirror (`--provider-mirror`, what `outpost tools install` lays out), any number
of network mirrors (`--provider-network-mirror https://...`, the provider network mirror protocol), and
the origin registries (`--provider-direct`). With no mirror configured terraform goes to the registries
as it always does; once one is, only the configured methods are used.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from outpost.agent.locks import file_lock
from outpost.config import AgentConfig

LOCK_NAME = ".init.lock"


def cache_dir(config: AgentConfig, *, use_cache: bool = True) -> Path | None:
    """The shared plugin cache; None when it is off, or not for this job (`use_cache`: see Job)."""
    return config.cache_root / "providers" if config.provider_cache and use_cache else None


def cli_config(config: AgentConfig, *, use_cache: bool = True) -> str:
    """The job's terraform CLI configuration file."""
    lines = []
    cache = cache_dir(config, use_cache=use_cache)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        lines.append(f"plugin_cache_dir = {json.dumps(str(cache))}")
    methods = []
    if config.provider_mirror is not None:
        methods += ["  filesystem_mirror {", f"    path = {json.dumps(str(config.provider_mirror))}", "  }"]
    for url in config.provider_network_mirrors:
        methods += ["  network_mirror {", f"    url = {json.dumps(url)}", "  }"]
    if methods and config.provider_direct:
        methods += ["  direct {}"]
    if methods:
        lines += ["provider_installation {", *methods, "}"]
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def init_lock(
    config: AgentConfig,
    say: Callable[[str], None],
    give_up: Callable[[], bool] | None = None,
    *,
    use_cache: bool = True,
) -> AsyncIterator[None]:
    """Held around `terraform init`: the one command that writes to the shared plugin cache.
    LockAbandoned (locks.py) when `give_up` turns true while waiting."""
    cache = cache_dir(config, use_cache=use_cache)
    if cache is None:
        yield
        return
    async with file_lock(
        cache / LOCK_NAME,
        on_wait=lambda: say("Waiting for the provider plugin cache (another job is running terraform init)..."),
        give_up=give_up,
    ):
        yield


def check_mirror_url(url: str) -> str:
    """Terraform accepts only https network mirrors, with a trailing slash."""
    if not url.startswith("https://"):
        raise ValueError(f"The provider network mirror {url!r} must be an https:// URL (terraform requires it).")
    return url if url.endswith("/") else url + "/"


__all__ = ["LOCK_NAME", "cache_dir", "check_mirror_url", "cli_config", "init_lock"]
