"""Terraform child processes: each in its own process group, interrupted gently, then killed whole.

Provider plugins are terraform's children, so signals that must reach them go to the process group.
Cancel sends one SIGINT to terraform itself (it then stops gracefully and still saves state); if it is
still running after the grace period, or on force-cancel, the whole group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("outpost.agent.process")

READ = 64 * 1024


class Process:
    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.interrupted = False
        self.killed = False

    async def run(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str], output: Callable[[bytes], None]) -> int:
        self.proc = await asyncio.create_subprocess_exec(
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
        if self.proc is not None and self.proc.returncode is None and not self.interrupted:
            self.interrupted = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)

    def kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            if self.proc.returncode is None:
                self.killed = True
