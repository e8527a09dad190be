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
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from outpost.agent.sandbox import Launch, RunSpace

log = logging.getLogger("outpost.agent.process")

READ = 64 * 1024
REAPER = Path(__file__).with_name("reaper.py")


class Process:
    def __init__(self, space: RunSpace | None = None) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.interrupted = False
        self.killed = False
        # The job's sandbox and limits (outpost.agent.sandbox); None runs the command as it is.
        self.space = space

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        output: Callable[[bytes], None],
        sandboxed: bool = True,
        nice: int = 0,
    ) -> int:
        """Run to the end, feeding `output`; the exit status. `sandboxed=False` runs outside the job's
        sandbox and limits (the operator's hooks), still in a process group of its own. `nice` lowers
        the priority (after any the job's limits set)."""
        space = self.space if sandboxed else None
        launch = space.launch(list(argv), cwd=cwd, env=env) if space else Launch(list(argv), env)
        options = [*launch.reaper_options, *(["--nice", str(nice)] if nice else [])]
        # Through the reaper (see reaper.py), in a process group of its own: terraform and its providers
        # die with the agent, however the agent dies.
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            str(REAPER),
            str(os.getpid()),
            *options,
            "--",
            *launch.argv,
            cwd=cwd,
            env=launch.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        began = time.monotonic()
        log.debug("started %s (pid %s)", " ".join(argv[:2]), self.proc.pid)
        watch = asyncio.create_task(space.watch(self.proc.pid, self.kill_group)) if space else None
        try:
            while chunk := await self.proc.stdout.read(READ):
                output(chunk)
            return await self.proc.wait()
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            # Whatever happened, nothing of this group outlives it (a provider that ignored its parent).
            self.kill_group()
            if self.proc.returncode is None:
                await self.proc.wait()
            if space is not None and space.killed_for_memory():
                output(f"\n{space.memory_message()}\n".encode())
            log.debug(
                "%s ended with %s after %.3f s", " ".join(argv[:2]), self.proc.returncode, time.monotonic() - began
            )

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
