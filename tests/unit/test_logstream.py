"""The agent's log shipper: batching at the pace the server asks, and a close that does not wait out a batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from outpost.agent import logstream
from outpost.agent.client import Appended
from outpost.agent.logstream import LogStream


class Recorder:
    """The server's side of appends: stores at the offset given, answers its size."""

    def __init__(self, interval: float | None = None) -> None:
        self.data = bytearray()
        self.calls = 0
        self.at: list[float] = []  # when each append arrived
        self.interval = interval  # what the answers say; None as an older server
        self.arrived = asyncio.Event()

    async def append_log(self, job_id: str, token: str, offset: int, data: bytes) -> Appended:
        self.calls += 1
        self.at.append(asyncio.get_running_loop().time())
        self.arrived.set()
        if offset == len(self.data):
            self.data += data
        return Appended(len(self.data), [], self.interval)


def test_output_is_batched_and_close_ships_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A batch longer than the test would wait: close must cut it short rather than sit it out.
    monkeypatch.setattr(logstream, "BATCH_WAIT", 60.0)

    async def scenario() -> Recorder:
        server = Recorder()
        stream = LogStream(server, "job-1", "token", tmp_path / "spool")  # type: ignore[arg-type]
        stream.start()
        for i in range(50):
            stream.line(f"line {i}")
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert server.calls == 0  # still gathering
        await asyncio.wait_for(stream.close(), 5)
        return server

    server = asyncio.run(scenario())
    assert server.data == b"".join(f"line {i}\n".encode() for i in range(50))
    assert server.calls == 1


@pytest.mark.parametrize(("interval", "expected"), [(0.6, 0.6), (None, 0.1), (0.0, 0.05), (3600.0, 5.0)])
def test_the_next_batch_waits_as_long_as_the_last_answer_says(
    tmp_path: Path, interval: float | None, expected: float
) -> None:
    """The first batch waits the agent's own 100 ms; later ones what the server's last answer said, within
    bounds (an older server says nothing: 100 ms)."""

    async def scenario() -> tuple[Recorder, LogStream, list[float]]:
        server = Recorder(interval)
        stream = LogStream(server, "job-1", "token", tmp_path / "spool")  # type: ignore[arg-type]
        stream.start()
        loop = asyncio.get_running_loop()
        written = [loop.time()]
        stream.line("first")
        await asyncio.wait_for(server.arrived.wait(), 5)
        server.arrived.clear()
        written.append(loop.time())
        stream.line("second")
        if expected < 1:
            await asyncio.wait_for(server.arrived.wait(), 5)
        else:  # not sat out: still gathering after a second, then close ships at once
            await asyncio.sleep(1)
            assert server.calls == 1
        await asyncio.wait_for(stream.close(), 5)
        return server, stream, written

    server, stream, written = asyncio.run(scenario())
    assert server.data == b"first\nsecond\n"
    assert server.calls == 2
    assert stream.wait == expected
    assert 0.1 <= server.at[0] - written[0] < 0.1 + 0.5
    if expected < 1:
        assert expected <= server.at[1] - written[1] < expected + 0.5
