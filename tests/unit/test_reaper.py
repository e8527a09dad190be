"""The reaper: it starts before every terraform command, so what it imports is paid each time (see
reaper.py); and the options it applies before exec."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outpost.agent import process as process_module
from outpost.agent.process import REAPER, Process, Reapers


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


# --- reapers started ahead of need (Reapers, reaper.py --stdin) ------------------------------------------


def test_a_ready_reaper_runs_the_command_it_is_sent(tmp_path: Path) -> None:
    """Directory, environment, options and stdin as a reaper started for the command would give them."""

    async def scenario() -> tuple[int, str, int, int | None]:
        reapers = Reapers()
        reapers.warm()
        ready = await _ready(reapers)
        out = bytearray()
        process = Process(reapers=reapers)
        script = "pwd; env; readlink /proc/self/fd/0; nice"
        code = await process.run(
            ["/bin/sh", "-c", script],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "ONLY": "this"},
            output=out.extend,
            nice=3,
        )
        assert process.proc is not None
        used = process.proc.pid
        await reapers.close()
        return code, out.decode(), used, ready.pid

    code, out, used, ready = asyncio.run(scenario())
    assert code == 0, out
    assert used == ready  # the command ran in the reaper started ahead, not in a new one
    lines = out.splitlines()
    assert lines[0] == str(tmp_path)
    assert "ONLY=this" in lines
    assert not [line for line in lines if line.startswith("HOME=")]  # nothing of the agent's environment
    assert lines[-2] == "/dev/null"
    assert int(lines[-1]) == min(19, os.nice(0) + 3)


def test_a_ready_reaper_not_needed_ends_when_closed() -> None:
    async def scenario() -> tuple[int | None, int | None]:
        reapers = Reapers()
        reapers.warm()
        ready = await _ready(reapers)
        before = ready.returncode
        await reapers.close()
        return before, ready.returncode

    assert asyncio.run(scenario()) == (None, 0)


def test_a_ready_reaper_goes_once_no_job_ran_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process_module, "IDLE_KEEP", 0.2)

    async def scenario() -> tuple[int | None, int | None]:
        reapers = Reapers()
        reapers.warm()
        kept = await _ready(reapers)
        reapers.idle()
        reapers.warm()  # a job arrived in time: the same reaper stays
        await asyncio.sleep(0.5)
        still = kept.returncode
        reapers.idle()
        await asyncio.wait_for(kept.wait(), 10)
        return still, kept.returncode

    assert asyncio.run(scenario()) == (None, 0)


def test_a_ready_reaper_that_died_is_replaced(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, bytes, bool]:
        reapers = Reapers()
        reapers.warm()
        ready = await _ready(reapers)
        os.kill(ready.pid, signal.SIGKILL)
        # Blocking on purpose: dead before the event loop hears of it, so the command's write finds out.
        time.sleep(0.2)  # noqa: ASYNC251
        out = bytearray()
        process = Process(reapers=reapers)
        code = await process.run(["/bin/echo", "ran"], cwd=tmp_path, env={}, output=out.extend)
        await reapers.close()
        return code, bytes(out), process.proc is not None and process.proc.pid != ready.pid

    assert asyncio.run(scenario()) == (0, b"ran\n", True)


def test_a_ready_reaper_dies_with_the_agent(tmp_path: Path) -> None:
    """Killed with SIGKILL, the agent leaves no reaper waiting for a command that will never come."""
    agent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio\n"
            "from outpost.agent.process import Reapers\n"
            "async def main():\n"
            "    reapers = Reapers()\n"
            "    reapers.warm()\n"
            "    ready = await reapers._next\n"
            "    print(ready.pid, flush=True)\n"
            "    await asyncio.sleep(60)\n"
            "asyncio.run(main())\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdout is not None
    with agent.stdout:
        pid = int(agent.stdout.readline())
    assert _alive(pid)
    agent.kill()
    agent.wait()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


async def _ready(reapers: Reapers) -> asyncio.subprocess.Process:
    assert reapers._next is not None
    return await reapers._next


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_ready_reaper_shows_none_of_the_agents_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_AGENT_TOKEN", "opa_not-for-children")

    async def scenario() -> bytes:
        reapers = Reapers()
        reapers.warm()
        ready = await _ready(reapers)
        shown = await asyncio.to_thread(Path(f"/proc/{ready.pid}/environ").read_bytes)
        await reapers.close()
        return shown

    assert asyncio.run(scenario()) == b""
