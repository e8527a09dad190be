"""Real `outpost` processes for end-to-end tests: started, waited for, and always cleaned up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import databases

OUTPOST = [sys.executable, "-m", "outpost"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    env.update(extra)
    return env


@dataclass
class Proc:
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=clean_env)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.popen is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Nothing of the process group may outlive the test (terraform, providers, a built-in agent).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


@dataclass
class Server:
    url: str
    data_dir: Path
    proc: Proc
    db_url: str


# Test servers keep few PostgreSQL connections: many run at once, and max_connections is 100 by default.
TEST_POOL_SIZE = "3"


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a server process on `database_url` (the URL, which may hold a password, stays
    out of the command line). A SQLite file in the data dir is the server's own default: nothing to add."""
    if database_url.startswith("sqlite"):
        return clean_env(**extra)
    return clean_env(**{"OUTPOST_DATABASE_URL": database_url, "OUTPOST_DATABASE_POOL_SIZE": TEST_POOL_SIZE, **extra})


def start_server(
    data_dir: Path,
    tools_dir: Path,
    *args: str,
    port: int | None = None,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """A server on a new database (see tests.support.databases), or on `database_url` (a restart, a replica)."""
    port = port or free_port()
    database_url = database_url or databases.new_database(data_dir)
    proc = Proc(
        [*OUTPOST, "server", "--port", str(port), "--data-dir", str(data_dir), "--tools-dir", str(tools_dir), *args],
        data_dir / "server.log",
        env=server_env(database_url, **(env or {})),
    ).start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"server exited:\n{proc.output()[-3000:]}")
        try:
            return httpx.get(f"{url}/api/v2/ping", timeout=1).status_code == 204
        except httpx.TransportError:
            return False

    wait_until(up, 60, what="the server")
    return Server(url=url, data_dir=data_dir, proc=proc, db_url=database_url)


def start_agent(
    server_url: str,
    token: str,
    data_dir: Path,
    tools_dir: Path,
    *args: str,
    name: str = "agent",
    env: dict[str, str] | None = None,
) -> Proc:
    return Proc(
        [
            *OUTPOST,
            "agent",
            "--address",
            server_url,
            "--name",
            name,
            "--data-dir",
            str(data_dir),
            "--tools-dir",
            str(tools_dir),
            *args,
        ],
        data_dir.parent / f"{data_dir.name}.log",
        env=clean_env(OUTPOST_AGENT_TOKEN=token, **(env or {})),
    ).start()
