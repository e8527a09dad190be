"""A job's first requests: sent together, since each is a round trip over a slow link."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from outpost.agent.client import JobGone
from outpost.agent.job import Job
from outpost.config import AgentConfig


class SlowLink:
    """A server that never answers, except the job's details once every other early request is out; then
    it says the job is gone, which ends the job there."""

    def __init__(self, expected: int) -> None:
        self.asked: list[str] = []
        self.expected = expected
        self.all_asked = asyncio.Event()

    def _ask(self, what: str) -> None:
        self.asked.append(what)
        if len(self.asked) == self.expected:
            self.all_asked.set()

    async def download(self, job_id: str, token: str, what: str) -> bytes:
        self._ask(what)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def start(self, job_id: str, token: str) -> None:
        self._ask("start")
        await asyncio.sleep(3600)

    async def job(self, job_id: str, token: str) -> None:
        self._ask("job")
        await asyncio.wait_for(self.all_asked.wait(), 5)  # a TimeoutError here: the requests went one by one
        raise JobGone("gone")


@pytest.mark.parametrize(
    ("phase", "early"),
    [
        ("plan", {"job", "start", "state", "configuration"}),
        ("apply", {"job", "start", "state"}),
        (None, {"job", "start", "state"}),
    ],
)
def test_details_start_and_files_are_asked_for_at_once(tmp_path: Path, phase: str | None, early: set[str]) -> None:
    async def scenario() -> SlowLink:
        link = SlowLink(len(early))
        job = Job(
            AgentConfig(address="http://x", token="t", data_dir=tmp_path), link, "job-1", "secret", "a", phase=phase
        )  # type: ignore[arg-type]
        await asyncio.wait_for(job.run(), 10)
        # Nothing asked early outlives the job: the requests still waiting are cancelled with it.
        assert all(task.done() for task in job._early.values())
        return link

    link = asyncio.run(scenario())
    assert set(link.asked) == early and len(link.asked) == len(early)
    assert list((tmp_path / "jobs").iterdir()) == []  # the job directory is gone too
