"""The run state machine of Terraform Cloud, as an explicit table.

A run moves through a plan phase and an apply phase. Every change of a run's status goes through
`next_status`, which raises `InvalidTransition` for anything the table does not list.
"""

from __future__ import annotations

from enum import StrEnum

from outpost.errors import InvalidTransition


class RunStatus(StrEnum):
    PENDING = "pending"
    PLAN_QUEUED = "plan_queued"
    PLANNING = "planning"
    PLANNED = "planned"
    PLANNED_AND_FINISHED = "planned_and_finished"
    CONFIRMED = "confirmed"
    APPLY_QUEUED = "apply_queued"
    APPLYING = "applying"
    APPLIED = "applied"
    DISCARDED = "discarded"
    ERRORED = "errored"
    CANCELED = "canceled"


class RunEvent(StrEnum):
    QUEUE_PLAN = "queue_plan"  # the workspace is free: the plan job is queued for an agent
    PLAN_STARTED = "plan_started"
    PLAN_FINISHED = "plan_finished"  # changes to apply: wait for confirmation
    PLAN_FINISHED_NO_APPLY = "plan_finished_no_apply"  # no changes, or a speculative plan
    CONFIRM = "confirm"
    QUEUE_APPLY = "queue_apply"
    APPLY_STARTED = "apply_started"
    APPLY_FINISHED = "apply_finished"
    DISCARD = "discard"
    CANCEL = "cancel"
    ERROR = "error"


S, E = RunStatus, RunEvent

TRANSITIONS: dict[tuple[RunStatus, RunEvent], RunStatus] = {
    (S.PENDING, E.QUEUE_PLAN): S.PLAN_QUEUED,
    (S.PENDING, E.DISCARD): S.DISCARDED,
    (S.PENDING, E.CANCEL): S.CANCELED,
    (S.PENDING, E.ERROR): S.ERRORED,
    (S.PLAN_QUEUED, E.PLAN_STARTED): S.PLANNING,
    (S.PLAN_QUEUED, E.CANCEL): S.CANCELED,
    (S.PLAN_QUEUED, E.ERROR): S.ERRORED,
    (S.PLANNING, E.PLAN_FINISHED): S.PLANNED,
    (S.PLANNING, E.PLAN_FINISHED_NO_APPLY): S.PLANNED_AND_FINISHED,
    (S.PLANNING, E.CANCEL): S.CANCELED,
    (S.PLANNING, E.ERROR): S.ERRORED,
    (S.PLANNED, E.CONFIRM): S.CONFIRMED,
    (S.PLANNED, E.DISCARD): S.DISCARDED,
    (S.PLANNED, E.CANCEL): S.CANCELED,
    (S.PLANNED, E.ERROR): S.ERRORED,
    (S.CONFIRMED, E.QUEUE_APPLY): S.APPLY_QUEUED,
    (S.CONFIRMED, E.CANCEL): S.CANCELED,
    (S.CONFIRMED, E.ERROR): S.ERRORED,
    (S.APPLY_QUEUED, E.APPLY_STARTED): S.APPLYING,
    (S.APPLY_QUEUED, E.CANCEL): S.CANCELED,
    (S.APPLY_QUEUED, E.ERROR): S.ERRORED,
    (S.APPLYING, E.APPLY_FINISHED): S.APPLIED,
    (S.APPLYING, E.CANCEL): S.CANCELED,
    (S.APPLYING, E.ERROR): S.ERRORED,
}

FINAL: frozenset[RunStatus] = frozenset({S.PLANNED_AND_FINISHED, S.APPLIED, S.DISCARDED, S.ERRORED, S.CANCELED})
# Statuses in which a non-speculative run holds its workspace (one active run per workspace).
ACTIVE: frozenset[RunStatus] = frozenset(RunStatus) - FINAL - {S.PENDING}
# Statuses in which an agent may be executing a phase of the run.
EXECUTING: frozenset[RunStatus] = frozenset({S.PLANNING, S.APPLYING})
CANCELABLE: frozenset[RunStatus] = frozenset(
    {S.PENDING, S.PLAN_QUEUED, S.PLANNING, S.CONFIRMED, S.APPLY_QUEUED, S.APPLYING}
)
DISCARDABLE: frozenset[RunStatus] = frozenset({S.PENDING, S.PLANNED})


def next_status(current: RunStatus, event: RunEvent) -> RunStatus:
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise InvalidTransition(
            f"A run that is {current.value} cannot take the action {event.value}.",
            title="transition not allowed",
        ) from None


def can(current: RunStatus, event: RunEvent) -> bool:
    return (current, event) in TRANSITIONS


class PhaseStatus(StrEnum):
    """Status of a plan or an apply (Terraform Cloud's names)."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    ERRORED = "errored"
    CANCELED = "canceled"
    UNREACHABLE = "unreachable"


PHASE_FINAL: frozenset[PhaseStatus] = frozenset(
    {PhaseStatus.FINISHED, PhaseStatus.ERRORED, PhaseStatus.CANCELED, PhaseStatus.UNREACHABLE}
)
