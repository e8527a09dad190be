"""Ids that log lines carry without every call passing them: agent, job, run and workspace.

Context variables follow asyncio tasks: an id bound in a job's task marks every line logged by that job
(and by the tasks it starts), and no other job's. The JSON log formatter adds them to each entry.
"""

from __future__ import annotations

from contextvars import ContextVar

FIELDS = ("agent_id", "job_id", "run_id", "workspace_id")
_vars: dict[str, ContextVar[str | None]] = {name: ContextVar(name, default=None) for name in FIELDS}


def bind(**ids: str | None) -> None:
    """Set ids for the current task (and the tasks it starts from now on)."""
    for name, value in ids.items():
        _vars[name].set(value)


def current() -> dict[str, str]:
    return {name: value for name, var in _vars.items() if (value := var.get()) is not None}
