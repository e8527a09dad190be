"""How the agent reaches out: through the operator's proxy (HTTPS_PROXY, NO_PROXY, basic auth in the
proxy URL), trusting the system's CAs plus the operator's own (`--ca-cert`, `SSL_CERT_FILE`).

The settings come from the agent's configuration (read once in cli.py), never from os.environ here, so
httpx is told everything explicitly (`trust_env=False`). Terraform gets the same proxy variables through
its clean environment, and a CA bundle that adds `--ca-cert` to the system's (Go reads SSL_CERT_FILE as
the whole trust store, so handing it the private CA alone would break every public endpoint).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from outpost.config import AgentConfig


def _first(env: Mapping[str, str], *names: str) -> str | None:
    # curl and Python give the lower-case spelling precedence; so do we.
    for name in names:
        value = env.get(name.lower()) or env.get(name.upper())
        if value:
            return value
    return None


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """NO_PROXY with the rules terraform (Go's net/http) applies, so that the agent and terraform agree:
    `*` for everything; an IP address or a CIDR range; a domain name, matching it and its subdomains (a
    leading dot: subdomains only); any entry may name a port."""
    host = host.lower().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]")
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy URL to reach `url` through, or None for a direct connection (NO_PROXY, or no proxy set)."""
    target = httpx.URL(url)
    if target.scheme not in ("http", "https"):
        return None
    port = target.port or (443 if target.scheme == "https" else 80)
    no_proxy = _first(env, "no_proxy")
    if no_proxy and bypasses_proxy(target.host, port, no_proxy):
        return None
    return _first(env, f"{target.scheme}_proxy")


def ssl_context(ca_cert: Path | None, env: Mapping[str, str]) -> ssl.SSLContext:
    """System roots (or SSL_CERT_FILE / SSL_CERT_DIR when set), plus `--ca-cert` on top."""
    cafile, capath = env.get("SSL_CERT_FILE") or None, env.get("SSL_CERT_DIR") or None
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    if ca_cert is not None:
        context.load_verify_locations(cafile=str(ca_cert))
    return context


def http_options(config: AgentConfig, url: str) -> dict[str, Any]:
    """Keyword arguments for an httpx client that talks to `url` the way the operator configured."""
    return {
        "verify": ssl_context(config.ca_cert, config.passthrough_env),
        "proxy": proxy_for(url, config.passthrough_env),
        "trust_env": False,
    }


def redact(proxy: str | None) -> str:
    """A proxy URL fit for a log line: its password is never printed."""
    if not proxy:
        return "none"
    parsed = httpx.URL(proxy)
    if not parsed.password:
        return proxy
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.username}:***@{parsed.host}{port}"


def terraform_ca_bundle(config: AgentConfig) -> Path | None:
    """Write the bundle terraform trusts: the base store plus `--ca-cert`; None when there is no --ca-cert."""
    if config.ca_cert is None:
        return None
    defaults = ssl.get_default_verify_paths()
    base_file = config.passthrough_env.get("SSL_CERT_FILE") or defaults.cafile or defaults.openssl_cafile
    parts = []
    if base_file and Path(base_file).is_file():
        parts.append(Path(base_file).read_text())
    parts.append(config.ca_cert.read_text())
    bundle = config.cache_root / "ca-bundle.pem"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    partial = bundle.with_name(f".{bundle.name}.partial")
    partial.write_text("\n".join(p.rstrip("\n") for p in parts) + "\n")
    partial.replace(bundle)
    return bundle
