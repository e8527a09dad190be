"""The reaper starts before every terraform command: what it imports is paid each time (see reaper.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from outpost.agent.process import REAPER


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
