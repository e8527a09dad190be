"""The limits on failed sign-ins (pure rules, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from outpost.domain.signin import PER_ADDRESS, PER_EMAIL, PER_EMAIL_AND_ADDRESS, WINDOW, retry_after, wait_for

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def ago(*seconds: float) -> list[datetime]:
    return [NOW - timedelta(seconds=s) for s in seconds]


def test_below_the_limit_there_is_no_wait() -> None:
    assert wait_for(ago(1, 2, 3, 4), PER_EMAIL_AND_ADDRESS, NOW) == timedelta(0)
    assert wait_for([], PER_EMAIL, NOW) == timedelta(0)


def test_at_the_limit_the_wait_lasts_until_the_oldest_failure_leaves_the_window() -> None:
    failures = ago(600, 300, 200, 100, 10)
    assert len(failures) == PER_EMAIL_AND_ADDRESS.failures
    assert wait_for(failures, PER_EMAIL_AND_ADDRESS, NOW) == WINDOW - timedelta(seconds=600)


def test_failures_older_than_the_window_do_not_count() -> None:
    old = ago(*(WINDOW.total_seconds() + s for s in range(1, 30)))
    assert wait_for(old + ago(5), PER_EMAIL_AND_ADDRESS, NOW) == timedelta(0)


def test_beyond_the_limit_enough_failures_must_expire_to_get_below_it() -> None:
    failures = ago(800, 700, 600, 500, 400, 300, 200)  # two over the limit of five
    assert wait_for(failures, PER_EMAIL_AND_ADDRESS, NOW) == WINDOW - timedelta(seconds=600)


def test_the_longest_wait_of_the_three_limits_applies() -> None:
    spread = ago(*range(10, 10 + PER_EMAIL.failures * 10, 10))  # one email, guessed at from many addresses
    wait = retry_after(now=NOW, same_email_and_address=ago(1), same_email=spread, same_address=ago(1))
    assert wait == WINDOW - timedelta(seconds=PER_EMAIL.failures * 10)
    one_client = ago(*range(1, PER_ADDRESS.failures + 1))  # one address trying many emails
    assert retry_after(now=NOW, same_email_and_address=[], same_email=[], same_address=one_client) > timedelta(0)
    assert retry_after(now=NOW, same_email_and_address=[], same_email=[], same_address=[]) == timedelta(0)
