"""Jobs: one phase (plan or apply) of one run, executed by one agent.

A job is claimed atomically by an agent (queued -> assigned), started (-> running) and finished. Its
credential is valid only while the job is assigned or running, which is also what fences a late agent
off once the server has given up on the job.
"""

from __future__ import annotations

from enum import StrEnum

from outpost.errors import InvalidTransition


class Phase(StrEnum):
    PLAN = "plan"
    APPLY = "apply"


class JobStatus(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    FINISHED = "finished"
    ERRORED = "errored"
    CANCELED = "canceled"


J = JobStatus

JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    J.QUEUED: frozenset({J.ASSIGNED, J.CANCELED, J.ERRORED}),
    # An assigned job whose agent vanished before starting it goes back to the queue.
    J.ASSIGNED: frozenset({J.RUNNING, J.QUEUED, J.CANCELED, J.ERRORED}),
    J.RUNNING: frozenset({J.FINISHED, J.ERRORED, J.CANCELED}),
    J.FINISHED: frozenset(),
    J.ERRORED: frozenset(),
    J.CANCELED: frozenset(),
}

ACTIVE_JOB: frozenset[JobStatus] = frozenset({J.ASSIGNED, J.RUNNING})
FINAL_JOB: frozenset[JobStatus] = frozenset({J.FINISHED, J.ERRORED, J.CANCELED})


def check_job_transition(current: JobStatus, new: JobStatus) -> None:
    if new not in JOB_TRANSITIONS[current]:
        raise InvalidTransition(f"A job that is {current.value} cannot become {new.value}.")


class JobOutcome(StrEnum):
    """How an agent says a job ended: a value from a fixed list, not free text."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # terraform exited non-zero
    CANCELED = "canceled"  # interrupted on request
    ERRORED = "errored"  # the agent could not run terraform (setup, download, upload)


class JobRight(StrEnum):
    """What a job credential may do; which phase may do what is the table below."""

    READ = "read"  # the job's details (configuration variables included) and its start
    READ_CONFIGURATION = "read-configuration"
    READ_STATE = "read-state"
    WRITE_LOG = "write-log"
    FINISH = "finish"
    WRITE_PLAN = "write-plan"  # the saved plan
    WRITE_PLAN_JSON = "write-plan-json"  # `terraform show -json` of the saved plan
    READ_PLAN = "read-plan"
    WRITE_STATE = "write-state"


_COMMON = frozenset(
    {JobRight.READ, JobRight.READ_CONFIGURATION, JobRight.READ_STATE, JobRight.WRITE_LOG, JobRight.FINISH}
)

# A plan job writes a plan and never state; an apply job reads that plan and writes state. An apply job
# also writes the plan's JSON, but only while the plan has none: an auto-applied plan leaves it to the
# apply, which renders it beside `terraform apply` instead of before the plan is reported (store/jobs.py).
JOB_RIGHTS: dict[Phase, frozenset[JobRight]] = {
    Phase.PLAN: _COMMON | {JobRight.WRITE_PLAN, JobRight.WRITE_PLAN_JSON},
    Phase.APPLY: _COMMON | {JobRight.READ_PLAN, JobRight.WRITE_STATE, JobRight.WRITE_PLAN_JSON},
}
