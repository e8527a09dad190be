"""The systemd units in deploy/systemd: checked by systemd itself, and against the CLI they start."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from outpost.agent.exitcodes import ExitCode
from outpost.cli import main

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).parent.parent.parent / "deploy" / "systemd"
UNITS = ("outpost-server.service", "outpost-agent@.service")
INSTALLED = "/opt/outpost/bin/outpost"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name)
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The units as shipped, with ExecStart pointed at this checkout's `outpost` (verify checks it exists)."""
    here = Path(sys.executable).with_name("outpost")
    assert here.is_file()
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        assert f"ExecStart={INSTALLED} " in text
        (tmp_path / name).write_text(text.replace(INSTALLED, str(here)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "./outpost-server.service", "./outpost-agent@edge1.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    # Unknown or malformed settings are only warnings: any output at all is a failure here.
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


def test_agent_unit_drains_gracefully_and_restarts_only_when_it_helps() -> None:
    service = _unit("outpost-agent@.service")["Service"]
    # The stop signal reaches the agent alone (terraform must not be interrupted), with time to drain.
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"] == "2h"
    assert service["Restart"] == "always"
    no_restart = {int(code) for code in service["RestartPreventExitStatus"].split()}
    assert no_restart == {ExitCode.USAGE, ExitCode.TOKEN_REJECTED, ExitCode.TOKEN_REVOKED, ExitCode.PROTOCOL_MISMATCH}
    assert service["EnvironmentFile"] == "/etc/outpost/agent-%i.env"
    server = _unit("outpost-server.service")["Service"]
    assert server["KillMode"] == "mixed" and server["Restart"] == "on-failure"
    assert server["EnvironmentFile"] == "/etc/outpost/server.env"


@pytest.mark.parametrize(("env_file", "command"), [("server.env", "server"), ("agent.env", "agent")])
def test_environment_files_name_only_real_settings(env_file: str, command: str) -> None:
    cmd = main.commands[command]
    known = {p.envvar for p in cmd.params if isinstance(p, click.Option) and isinstance(p.envvar, str)}
    known |= {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE"}  # read by the agent as is
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (DEPLOY / env_file).read_text(), re.MULTILINE)
    assert names, env_file
    unknown = sorted(set(names) - known)
    assert unknown == [], f"{env_file} names settings that `outpost {command}` does not read: {unknown}"
