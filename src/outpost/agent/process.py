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
IDLE_KEEP = 60.0  # seconds a started reaper waits for the next job once the last one ended


def _reaper_argv(*args: str) -> list[str]:
    return [sys.executable, "-I", "-S", str(REAPER), str(os.getpid()), *args]


class Reapers:
    """One reaper started ahead of need (reaper.py --stdin), so that a command starts without waiting for
    the interpreter's start-up: 35 ms here per command on a plan and apply's critical path (init, plan,
    apply), 8 ms with a reaper ready. Started when a job arrives, and again each time one is taken;
    closed once no job has run for `IDLE_KEEP` seconds, so an idle agent keeps no extra process. A reaper
    in waiting dies with the agent, like any other (its death signal is armed before it reads)."""

    def __init__(self) -> None:
        self._next: asyncio.Task[asyncio.subprocess.Process] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def warm(self) -> None:
        """Have a reaper ready for the next command (a job arrived, or the ready one was taken)."""
        self._stop_idle_timer()
        if self._next is None:
            self._next = asyncio.create_task(_start_waiting())

    def idle(self) -> None:
        """No job runs now: the ready reaper goes unless a job arrives within `IDLE_KEEP`."""
        if self._idle is None and self._next is not None:
            self._idle = asyncio.get_running_loop().call_later(IDLE_KEEP, self._close_soon)

    def _stop_idle_timer(self) -> None:
        """No close by the idle timer: a job came after all, or the reaper is being closed now."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _close_soon(self) -> None:
        self._idle = None
        task = asyncio.create_task(self.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def take(self) -> asyncio.subprocess.Process | None:
        """The ready reaper, if one was started and still waits (another is started for the next command)."""
        task, self._next = self._next, None
        if task is None:
            return None
        try:
            proc = await task
        except OSError as exc:
            log.warning("could not start a reaper ahead of need: %s", exc)
            return None
        self.warm()
        if proc.returncode is not None:  # it died waiting: its pipes are closed, and the command starts anew
            await _dismiss(proc)
            return None
        return proc

    async def close(self) -> None:
        self._stop_idle_timer()
        task, self._next = self._next, None
        if task is not None:
            try:
                proc = await task
            except OSError:
                return
            await _dismiss(proc)


async def _start_waiting() -> asyncio.subprocess.Process:
    # With no environment: it gets the command's own with the command, and the agent's (its pool token
    # among it) is nothing a process that waits for a stranger's command should show in /proc.
    return await asyncio.create_subprocess_exec(
        *_reaper_argv("--stdin"),
        env={},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


async def _dismiss(proc: asyncio.subprocess.Process) -> None:
    """A waiting reaper not needed after all: stdin closed with nothing written ends it."""
    assert proc.stdin is not None
    proc.stdin.close()
    with contextlib.suppress(ConnectionError):
        await proc.stdin.wait_closed()
    await proc.wait()


def _command(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> bytes:
    """A command for a waiting reaper (reaper.py --stdin)."""
    fields = [str(cwd), str(len(env)), *(f"{name}={value}" for name, value in env.items()), *argv]
    return b"\0".join(os.fsencode(field) for field in fields)


class Process:
    def __init__(self, space: RunSpace | None = None, reapers: Reapers | None = None) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.interrupted = False
        self.killed = False
        # The job's sandbox and limits (outpost.agent.sandbox); None runs the command as it is.
        self.space = space
        self.reapers = reapers  # reapers started ahead of need, if the agent keeps them

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
        self.proc = await self._send(*options, "--", *launch.argv, cwd=cwd, env=launch.env)
        if self.proc is None:
            self.proc = await asyncio.create_subprocess_exec(
                *_reaper_argv(*options, "--", *launch.argv),
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

    async def _send(self, *args: str, cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process | None:
        """The command given to a reaper started ahead of need, if one is ready (None: start one now)."""
        proc = await self.reapers.take() if self.reapers is not None else None
        if proc is None:
            return None
        assert proc.stdin is not None
        try:
            proc.stdin.write(_command(args, cwd, env))
            proc.stdin.close()
            await proc.stdin.wait_closed()
        except ConnectionError:  # it died waiting (killed by someone, or for memory): start one now
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await _dismiss(proc)
            return None
        return proc

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
