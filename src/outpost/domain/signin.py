"""How many failed sign-ins are tolerated before the next attempt must wait.

Three windows, each counted over the last `WINDOW`: one email from one address (a person mistyping,
or one guesser), one email from anywhere (guessing spread over many addresses), and one address for
any email (one client trying many accounts). Each check also costs a full scrypt computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Limit:
    name: str
    failures: int  # this many failures within WINDOW make the next attempt wait


PER_EMAIL_AND_ADDRESS = Limit("email-and-address", 5)
PER_EMAIL = Limit("email", 20)
PER_ADDRESS = Limit("address", 50)


def wait_for(failures: Sequence[datetime], limit: Limit, now: datetime) -> timedelta:
    """How long until fewer than `limit.failures` of `failures` lie within the window (zero: go ahead)."""
    recent = sorted(t for t in failures if t > now - WINDOW)
    excess = len(recent) - limit.failures
    if excess < 0:
        return timedelta(0)
    return max(recent[excess] + WINDOW - now, timedelta(seconds=1))


def retry_after(
    *,
    now: datetime,
    same_email_and_address: Sequence[datetime],
    same_email: Sequence[datetime],
    same_address: Sequence[datetime],
) -> timedelta:
    """The longest wait any limit imposes; zero when the attempt may be checked."""
    return max(
        wait_for(same_email_and_address, PER_EMAIL_AND_ADDRESS, now),
        wait_for(same_email, PER_EMAIL, now),
        wait_for(same_address, PER_ADDRESS, now),
    )
