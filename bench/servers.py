"""Real `outpost server` and `outpost agent` processes for the benchmarks, and a meter of their CPU and memory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from outpost.admin import bootstrap

OUTPOST = [sys.executable, "-m", "outpost"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.popen.poll() is None:
            self.popen.wait(5)


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env or dict(os.environ), start_new_session=True
        )
    return Proc(popen, log)


@dataclass
class Server:
    url: str
    proc: Proc
    db_url: str

    def stop(self) -> None:
        self.proc.stop()


def start_server(data_dir: Path, *flags: str, database_url: str | None = None, port: int | None = None) -> Server:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    db_url = database_url or f"sqlite:///{data_dir / 'outpost.db'}"
    argv = [*OUTPOST, "server", "--port", str(port), "--data-dir", str(data_dir), "--database-url", db_url, *flags]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    proc = spawn(argv, data_dir / "server.log", env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"the server exited; see {proc.log}")
        try:
            if httpx.get(f"{url}/api/v2/ping", timeout=1).status_code == 204:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"the server did not start; see {proc.log}")
        time.sleep(0.05)
    return Server(url=url, proc=proc, db_url=db_url)


def new_org(server: Server, name: str) -> str:
    """A fresh organization; returns its owner's API token."""
    return asyncio.run(bootstrap(server.db_url, name, f"{name}@bench.example"))


class Meter:
    """CPU share (of one core) and resident memory of a process, between `start()` and `read()`."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self._cpu0 = 0.0
        self._t0 = 0.0

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def start(self) -> None:
        self._cpu0, self._t0 = self._cpu(), time.monotonic()

    def read(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        return {
            "cpu_percent": round(100 * (self._cpu() - self._cpu0) / elapsed, 1) if elapsed > 0 else 0.0,
            "rss_mb": round(self.process.memory_info().rss / 2**20, 1),
        }
