"""The reaper: it starts before every terraform command, so what it imports is paid each time (see
reaper.py); and the options it applies before exec."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from outpost.agent.process import REAPER, Process


def test_the_reaper_runs_a_command_without_heavy_imports() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-X",
            "importtime",
            str(REAPER),
            str(os.getpid()),
            "--",
            "/bin/sh",
            "-c",
            "exit 3",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3, done.stderr  # it ran the command and passed its status on
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "ctypes" in imported  # the listing is real: prctl needs ctypes
    assert not imported & {"typing", "enum", "re", "functools", "signal"}, sorted(imported)


def test_a_niced_command_runs_below_the_agent(tmp_path: Path) -> None:
    out = bytearray()
    code = asyncio.run(
        Process().run(
            ["/bin/sh", "-c", "nice"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, output=out.extend, nice=10
        )
    )
    assert code == 0
    assert int(out) == min(19, os.nice(0) + 10)


def test_priorities_lowered_twice_add_up(tmp_path: Path) -> None:
    """The job's limits lower a command's priority, and a command beside the apply lowers it again: the
    second never replaces the first (which would raise the priority a limit set)."""
    argv = [sys.executable, "-I", "-S", str(REAPER), str(os.getpid()), "--nice", "3", "--nice", "4", "--"]
    done = subprocess.run([*argv, "/bin/sh", "-c", "nice"], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == min(19, os.nice(0) + 7)
