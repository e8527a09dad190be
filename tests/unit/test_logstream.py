"""The agent's log shipper: batching, and a close that does not wait out a batch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from outpost.agent import logstream
from outpost.agent.logstream import LogStream


class Recorder:
    """The server's side of appends: stores at the offset given, answers its size."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.calls = 0

    async def append_log(self, job_id: str, token: str, offset: int, data: bytes) -> tuple[int, list[Any]]:
        self.calls += 1
        if offset == len(self.data):
            self.data += data
        return len(self.data), []


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
