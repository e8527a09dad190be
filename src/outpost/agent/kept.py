"""Plans kept for their apply: after a plan that an apply may follow, the agent keeps the plan's working
directory (configuration, `.terraform` from `init`, the saved plan) for a while. When the same agent then
gets the apply job of the same run and the server's saved plan is byte for byte the one kept (its
sha256), the apply runs there: no second download and extraction of the configuration, no second
`terraform init`, no download of the plan. Anything else (another agent, a stale or evicted directory, a
different plan) takes the normal path, so keeping is only ever a shortcut.

Sandboxed runs are never kept: their directories belong to a per-run uid that is released with the job.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("outpost.agent.kept")

KEEP_SECONDS = 15 * 60.0  # a plan waiting for confirmation longer than this is applied the normal way


@dataclass(frozen=True)
class KeptPlan:
    run_id: str
    root: Path  # the plan job's directory, removed when the apply ends or the plan is discarded
    work: Path  # terraform's part of it (see Job.run)
    workdir: Path  # where terraform ran: the configuration's working directory
    plan_sha256: str
    kept_at: float


class PlanKeeper:
    def __init__(self, limit: int, ttl: float = KEEP_SECONDS) -> None:
        self.limit = max(1, limit)
        self.ttl = ttl
        self._plans: dict[str, KeptPlan] = {}

    def __len__(self) -> int:
        return len(self._plans)

    def keep(self, plan: KeptPlan) -> None:
        self._expire()
        self._discard(self._plans.pop(plan.run_id, None))
        while len(self._plans) >= self.limit:
            oldest = min(self._plans.values(), key=lambda p: p.kept_at)
            self._discard(self._plans.pop(oldest.run_id))
        self._plans[plan.run_id] = plan
        log.debug("kept the plan of run %s for its apply", plan.run_id)

    def take(self, run_id: str, plan_sha256: str | None) -> KeptPlan | None:
        """The kept plan of `run_id` if it is the server's saved plan; the caller then owns its directory."""
        self._expire()
        plan = self._plans.pop(run_id, None)
        if plan is None:
            return None
        if not plan_sha256 or plan.plan_sha256 != plan_sha256:
            log.info("run %s: the kept plan is not the server's saved plan; applying from a fresh directory", run_id)
            self._discard(plan)
            return None
        return plan

    def clear(self) -> None:
        for plan in list(self._plans.values()):
            self._discard(plan)
        self._plans.clear()

    def _expire(self) -> None:
        now = time.monotonic()
        for plan in [p for p in self._plans.values() if now - p.kept_at > self.ttl]:
            self._discard(self._plans.pop(plan.run_id))

    @staticmethod
    def _discard(plan: KeptPlan | None) -> None:
        if plan is not None:
            shutil.rmtree(plan.root, ignore_errors=True)
