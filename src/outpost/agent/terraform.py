"""Finding terraform binaries, the job environment and tfvars (the CLI configuration is in providers.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from outpost.tools.install import find_terraform

__all__ = ["find_terraform", "job_environment", "tfvars"]

# Only these host variables reach terraform, and only when the operator set them (proxies, CAs).
PASSTHROUGH = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def job_environment(
    *,
    home: Path,
    tmp: Path,
    cli_config_file: Path,
    workspace_env: dict[str, str],
    passthrough: dict[str, str],
) -> dict[str, str]:
    """A clean environment: what terraform needs, the operator's proxy settings, the workspace's env vars.

    Never the agent's own variables (its token above all) and nothing else from the host.
    """
    env = {
        "PATH": BASE_PATH,
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": str(cli_config_file),
    }
    env.update({k: v for k, v in passthrough.items() if k in PASSTHROUGH})
    for key, value in workspace_env.items():
        if key.startswith("OUTPOST_"):
            continue  # the agent's namespace stays the agent's
        env[key] = value
    return env


_INTERPOLATION = re.compile(r"([$%])\{")


def _hcl_string(value: str) -> str:
    # JSON string escapes are valid HCL; template sequences must be escaped so values stay literal.
    return _INTERPOLATION.sub(lambda m: m.group(1) * 2 + "{", json.dumps(value))


def tfvars(variables: list[dict[str, Any]]) -> str:
    lines = []
    for var in variables:
        if var["category"] != "terraform":
            continue
        value = var["value"] if var["hcl"] else _hcl_string(var["value"])
        lines.append(f"{var['key']} = {value}")
    return "\n".join(lines) + "\n"
