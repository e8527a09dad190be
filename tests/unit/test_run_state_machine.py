"""The run and job state machines, and the workspace rules that gate which Terraform a run may use."""

from __future__ import annotations

import itertools

import pytest

from outpost.domain.jobs import FINAL_JOB, JOB_TRANSITIONS, JobStatus, check_job_transition
from outpost.domain.runs import (
    CANCELABLE,
    DISCARDABLE,
    FINAL,
    TRANSITIONS,
    RunEvent,
    RunStatus,
    can,
    next_status,
)
from outpost.domain.workspaces import (
    ExecutionMode,
    check_mode_and_version,
    check_workspace_name,
    parse_version,
)
from outpost.errors import Conflict, InvalidTransition, Unprocessable

ALL_PAIRS = list(itertools.product(RunStatus, RunEvent))
INVALID_PAIRS = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


@pytest.mark.parametrize(("pair", "target"), TRANSITIONS.items(), ids=lambda v: str(v))
def test_each_transition_leads_where_the_table_says(pair: tuple[RunStatus, RunEvent], target: RunStatus) -> None:
    current, event = pair
    assert next_status(current, event) is target
    assert can(current, event)


@pytest.mark.parametrize(("current", "event"), INVALID_PAIRS)
def test_transitions_not_in_the_table_are_refused(current: RunStatus, event: RunEvent) -> None:
    assert not can(current, event)
    with pytest.raises(InvalidTransition) as caught:
        next_status(current, event)
    assert caught.value.status == 409
    assert current.value in caught.value.detail
    assert event.value in caught.value.detail


def test_some_transitions_are_refused_at_all() -> None:
    # Guards the parametrized test above against an empty list.
    assert (RunStatus.APPLIED, RunEvent.CONFIRM) in INVALID_PAIRS
    assert (RunStatus.PLANNING, RunEvent.CONFIRM) in INVALID_PAIRS
    assert issubclass(InvalidTransition, Conflict)


def test_final_statuses_have_no_way_out() -> None:
    assert FINAL, "no final statuses"
    for status in FINAL:
        assert [event for (current, event) in TRANSITIONS if current is status] == [], status


def test_every_other_status_can_end() -> None:
    for status in set(RunStatus) - FINAL:
        assert any(current is status for current, _ in TRANSITIONS), status
        assert TRANSITIONS.get((status, RunEvent.ERROR)) is RunStatus.ERRORED, status


def test_every_status_is_reachable_from_pending() -> None:
    reached = {RunStatus.PENDING}
    frontier = [RunStatus.PENDING]
    while frontier:
        status = frontier.pop()
        for (current, _), target in TRANSITIONS.items():
            if current is status and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(RunStatus)


def test_cancelable_matches_the_table() -> None:
    with_cancel = {current for (current, event) in TRANSITIONS if event is RunEvent.CANCEL}
    assert with_cancel >= CANCELABLE
    for status in CANCELABLE:
        assert next_status(status, RunEvent.CANCEL) is RunStatus.CANCELED
    assert not CANCELABLE & FINAL


def test_discardable_matches_the_table() -> None:
    with_discard = {current for (current, event) in TRANSITIONS if event is RunEvent.DISCARD}
    assert with_discard == DISCARDABLE
    for status in DISCARDABLE:
        assert next_status(status, RunEvent.DISCARD) is RunStatus.DISCARDED
    assert not DISCARDABLE & FINAL


# --- jobs ---------------------------------------------------------------------------------------------------


def test_job_table_covers_every_status() -> None:
    assert set(JOB_TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize(("current", "new"), list(itertools.product(JobStatus, JobStatus)))
def test_job_transitions_follow_the_table(current: JobStatus, new: JobStatus) -> None:
    if new in JOB_TRANSITIONS[current]:
        check_job_transition(current, new)
    else:
        with pytest.raises(InvalidTransition) as caught:
            check_job_transition(current, new)
        assert current.value in caught.value.detail
        assert new.value in caught.value.detail


def test_job_final_statuses_have_no_way_out() -> None:
    assert FINAL_JOB == {status for status, targets in JOB_TRANSITIONS.items() if not targets}
    for status in FINAL_JOB:
        for new in JobStatus:
            with pytest.raises(InvalidTransition):
                check_job_transition(status, new)


def test_job_lifecycle() -> None:
    path = [JobStatus.QUEUED, JobStatus.ASSIGNED, JobStatus.QUEUED, JobStatus.ASSIGNED, JobStatus.RUNNING]
    for current, new in itertools.pairwise([*path, JobStatus.FINISHED]):
        check_job_transition(current, new)
    with pytest.raises(InvalidTransition):
        check_job_transition(JobStatus.RUNNING, JobStatus.QUEUED)  # a started job never goes back to the queue
    with pytest.raises(InvalidTransition):
        check_job_transition(JobStatus.QUEUED, JobStatus.RUNNING)  # nor runs without being claimed


# --- workspaces ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "_", "prod", "my-workspace", "my_workspace_2", "A" * 90, "x-y_z"])
def test_workspace_names_accepted(name: str) -> None:
    assert check_workspace_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "-", "has space", "a/b", "../x", "dot.ted", "é", "A" * 91, None, 12])
def test_workspace_names_refused(name: object) -> None:
    with pytest.raises(Unprocessable) as caught:
        check_workspace_name(name)
    assert caught.value.status == 422
    assert "workspace name" in caught.value.detail


@pytest.mark.parametrize(
    ("version", "parsed"),
    [("1.0.3", (1, 0, 3)), ("0.11.11", (0, 11, 11)), ("10.20.30", (10, 20, 30)), ("1.1.0-beta1", (1, 1, 0))],
)
def test_parse_version(version: str, parsed: tuple[int, int, int]) -> None:
    assert parse_version(version) == parsed


@pytest.mark.parametrize("version", ["", "1", "1.0", "v1.0.3", "1.0.3.4", "latest", "1.0.x", " 1.0.3"])
def test_parse_version_refuses(version: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_version(version)
    assert caught.value.status == 422


@pytest.mark.parametrize("mode", [ExecutionMode.AGENT, ExecutionMode.REMOTE])
def test_old_terraform_cannot_run_on_agents(mode: ExecutionMode) -> None:
    with pytest.raises(Unprocessable) as caught:
        check_mode_and_version(mode, "0.11.11")
    assert caught.value.status == 422
    assert "0.11.11" in caught.value.detail
    assert "0.12" in caught.value.detail


@pytest.mark.parametrize(
    ("mode", "version"),
    [
        (ExecutionMode.AGENT, "1.0.3"),
        (ExecutionMode.REMOTE, "1.0.3"),
        (ExecutionMode.AGENT, "0.12.0"),
        (ExecutionMode.AGENT, "latest"),
        (ExecutionMode.LOCAL, "0.11.11"),
        (ExecutionMode.LOCAL, "1.0.3"),
    ],
)
def test_mode_and_version_accepted(mode: ExecutionMode, version: str) -> None:
    check_mode_and_version(mode, version)  # raises if refused
