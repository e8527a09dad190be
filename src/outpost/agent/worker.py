"""The agent's loops, one per concern, started together and stopped together (asyncio.TaskGroup):
the poll loop (jobs and orders arrive by long-poll), the heartbeat loop, and one task per running job.
"""

from __future__ import annotations

import asyncio
import logging
import random

from outpost.agent.client import Client, Registration
from outpost.agent.job import Job
from outpost.agent.kept import PlanKeeper
from outpost.agent.process import Reapers
from outpost.agent.sandbox import Sandbox
from outpost.config import AgentConfig

log = logging.getLogger("outpost.agent.worker")


class Worker:
    def __init__(
        self, config: AgentConfig, client: Client, registration: Registration, sandbox: Sandbox | None = None
    ) -> None:
        self.config = config
        self.sandbox = sandbox
        self.client = client
        self.registration = registration
        self.jobs: dict[str, Job] = {}
        self.draining = asyncio.Event()  # take no new job
        self.done = asyncio.Event()  # set when the worker may exit
        self.jobs_taken = 0
        self.label = f"{config.name} ({registration.agent_id})" if config.name else registration.agent_id
        self._slot_freed = asyncio.Event()
        self._capacity_changed = asyncio.Event()
        self.kept = PlanKeeper(limit=config.concurrency)
        self.reapers = Reapers()

    @property
    def free(self) -> int:
        if self.draining.is_set():
            return 0
        if self.config.single and self.jobs_taken >= 1:
            return 0
        return max(0, self.config.concurrency - len(self.jobs))

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._heartbeat_loop())
                group.create_task(self._poll_loop())
                group.create_task(self._exit_watch())
        finally:
            self.kept.clear()
            await self.reapers.close()

    async def _exit_watch(self) -> None:
        """The worker ends when draining (or --single's one job is done) and no job is left."""
        while True:
            finished_single = self.config.single and self.jobs_taken >= 1
            if (self.draining.is_set() or finished_single) and not self.jobs:
                self.done.set()
                raise _Stop
            self._slot_freed.clear()
            waits = [asyncio.create_task(self.draining.wait()), asyncio.create_task(self._slot_freed.wait())]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

    async def _heartbeat_loop(self) -> None:
        interval = self.registration.heartbeat_interval
        while True:
            # Jitter spreads a fleet's heartbeats out (no thundering herd after a server restart).
            await asyncio.sleep(interval * random.uniform(0.8, 1.0))
            answer = await self.client.heartbeat(list(self.jobs))
            interval = float(answer.get("heartbeat_interval", interval))
            self._apply_orders(answer.get("cancel", []))

    async def _poll_loop(self) -> None:
        """Keep one long-poll open. When a slot frees up, the open poll (which asked for fewer jobs) is
        abandoned and a new one asks at once: the fast path after a job. A job the server assigned in an
        abandoned poll is not lost: the next poll lists the jobs we run, and the server delivers it again."""
        wait = self.registration.long_poll_timeout
        while True:
            if self.free == 0 and not self.jobs:
                await asyncio.sleep(0.05)  # about to exit
                continue
            accept = self.free
            applied = {job_id: job.cancel_kind for job_id, job in self.jobs.items() if job.cancel_kind}
            self._capacity_changed.clear()
            request = asyncio.create_task(self.client.poll(accept, list(self.jobs), applied, wait))
            changed = asyncio.create_task(self._capacity_changed.wait())
            await asyncio.wait([request, changed], return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if not request.done():
                if self.free == accept:
                    await asyncio.wait([request])
                else:
                    request.cancel()
                    # asyncio.wait, not `await request`: a cancel of this loop itself must not be swallowed.
                    await asyncio.wait([request])
                    continue
            answer = request.result()
            self._apply_orders(answer.get("cancel", []))
            for offered in answer.get("jobs", []):
                self._start_job(offered["id"], offered["token"], offered.get("phase"))

    def _apply_orders(self, orders: list[dict[str, str]]) -> None:
        for order in orders:
            job = self.jobs.get(order["job"])
            if job is not None:
                if job.cancel_kind not in (order["kind"], "force"):  # orders repeat until the job ends
                    log.info("job %s: %s requested", job.id, order["kind"])
                job.cancel(order["kind"])

    def _start_job(self, job_id: str, token: str, phase: str | None) -> None:
        job = Job(
            self.config,
            self.client,
            job_id,
            token,
            self.label,
            self.sandbox,
            self.kept,
            phase=phase,
            reapers=self.reapers,
        )
        self.jobs[job_id] = job
        self.reapers.warm()
        self.jobs_taken += 1
        log.info("job %s received", job_id)

        async def _run() -> None:
            try:
                await job.run()
            finally:
                self.jobs.pop(job_id, None)
                if not self.jobs:
                    self.reapers.idle()
                self._slot_freed.set()
                self._capacity_changed.set()

        self._group.create_task(_run())

    def drain(self) -> None:
        """Take no new job; the open poll is replaced by one that accepts none."""
        self.draining.set()
        self._capacity_changed.set()

    def cancel_all(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel("cancel")

    def kill_all(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel("force")


class _Stop(Exception):
    """Raised inside the task group to stop every loop once the worker is done."""
