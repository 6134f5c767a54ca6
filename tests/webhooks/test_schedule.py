"""The retry schedule and Retry-After, as pure functions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from webhooks.services import RETRY_AFTER_CAP, retry_delay

NOW = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)


class Extreme(random.Random):
    """The jitter at one end of its range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(
    ("round_attempts", "high", "seconds"),
    [(1, True, 6.0), (1, False, 4.0), (2, True, 360.0), (2, False, 240.0)],
)
def test_delay_is_the_schedule_with_twenty_percent_jitter(
    settings, round_attempts: int, high: bool, seconds: float
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 300]

    delay = retry_delay(
        round_attempts=round_attempts,
        status_code=500,
        retry_after=None,
        now=NOW,
        rng=Extreme(high),
    )

    assert delay == timedelta(seconds=seconds)


def test_schedule_runs_out(settings) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 300]

    assert retry_delay(round_attempts=3, status_code=500, retry_after=None, now=NOW) is None


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [
        (429, "120", 120.0),
        (503, "120", 120.0),
        (503, "1", 6.0),  # shorter than the schedule: the schedule wins
        (500, "120", 6.0),  # only 429 and 503 are asked to wait
        (429, "99999999", RETRY_AFTER_CAP.total_seconds()),
        (429, "garbage", 6.0),
    ],
)
def test_retry_after_waits_at_least_that_long_capped(
    settings, status: int, header: str, seconds: float
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = [5, 300]

    delay = retry_delay(
        round_attempts=1, status_code=status, retry_after=header, now=NOW, rng=Extreme(True)
    )

    assert delay == timedelta(seconds=seconds)
