"""The server's own agent, which executes runs of workspaces in `remote` execution mode.

It is a real `outpost agent` child process that reaches the server over a Unix socket in the data
directory (so it needs no TLS trust and no open port) with a token made for this server process and
revoked when the process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

from outpost.config import ServerConfig
from outpost.store import pools
from outpost.store.db import Database

log = logging.getLogger("outpost.server.builtin_agent")


def _die_with_parent() -> None:
    """In the child before exec: a SIGTERM when the server dies, however it dies (the agent then drains)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class BuiltinAgent:
    def __init__(self, config: ServerConfig, db: Database, socket_path: Path) -> None:
        self.config = config
        self.db = db
        self.socket_path = socket_path
        self.process: asyncio.subprocess.Process | None = None
        self.token_id: str | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        async with self.db.write() as session:
            token, secret = await pools.new_builtin_token(session, f"built-in agent of server pid {os.getpid()}")
        self.token_id = token.id
        self._secret = secret
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise())

    async def _spawn(self) -> None:
        data_dir = (self.config.data_dir / "builtin-agent").resolve()
        cmd = [
            sys.executable,
            "-m",
            "outpost",
            "agent",
            "--address",
            "http://outpost.internal",
            "--unix-socket",
            str(self.socket_path),
            "--name",
            "builtin",
            "--data-dir",
            str(data_dir),
            "--concurrency",
            str(self.config.builtin_agent_concurrency),
            "--log-level",
            self.config.log_level,
        ]
        if self.config.tools_dir is not None:
            cmd += ["--tools-dir", str(self.config.tools_dir.resolve())]
        if self.config.builtin_agent_sandbox != "none":
            cmd += ["--sandbox", self.config.builtin_agent_sandbox]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
        env["OUTPOST_AGENT_TOKEN"] = self._secret
        self.process = await asyncio.create_subprocess_exec(
            *cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        log.info("built-in agent started (pid %s)", self.process.pid)

    async def _supervise(self) -> None:
        delay = 1.0
        while not self._stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self._stopping:
                return
            log.warning("built-in agent exited with %s; restarting in %.0f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
            await self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        if self.process is not None and self.process.returncode is None:
            # Two signals: the agent finishes nothing more and cancels its jobs, then deregisters.
            for _ in range(2):
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.05)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.token_id is not None:
            async with self.db.write() as session:
                token = await pools.get_token(session, self.token_id)
                await pools.revoke_token(session, token)
