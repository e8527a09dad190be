"""Terraform child processes: each in its own process group, interrupted gently, then killed whole.

Provider plugins are terraform's children, so signals that must reach them go to the process group.
Cancel sends one SIGINT to the group, as Ctrl-C in a terminal would (terraform then stops gracefully and
still saves state; its plugins ignore SIGINT); if it is still running after the grace period, or on
force-cancel, the whole group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("outpost.agent.process")

READ = 64 * 1024
REAPER = Path(__file__).with_name("reaper.py")


class Process:
    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.interrupted = False
        self.killed = False

    async def run(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str], output: Callable[[bytes], None]) -> int:
        # Through the reaper (see reaper.py), in a process group of its own: terraform and its providers
        # die with the agent, however the agent dies.
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            str(REAPER),
            str(os.getpid()),
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        try:
            while chunk := await self.proc.stdout.read(READ):
                output(chunk)
            return await self.proc.wait()
        finally:
            # Whatever happened, nothing of this group outlives it (a provider that ignored its parent).
            self.kill_group()
            if self.proc.returncode is None:
                await self.proc.wait()

    def interrupt(self) -> None:
        """One SIGINT to the group (the reaper ignores it): a graceful stop that still saves state."""
        if self.proc is not None and self.proc.returncode is None and not self.interrupted:
            self.interrupted = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGINT)

    def kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            if self.proc.returncode is None:
                self.killed = True
