"""The retry policy (novitai/retry.py), as pure functions: backoff with jitter, Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from jobs.services import job_backoff_seconds
from novitai.retry import RETRY_AFTER_CAP_SECONDS, backoff_delay, jittered, parse_retry_after
from tests.webhooks.test_schedule import Extreme


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n, base=0.5, cap=8.0, rand=lambda: 1.0) for n in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_is_full_jitter_below_the_ceiling() -> None:
    assert backoff_delay(3, base=0.5, cap=8.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, base=0.5, cap=8.0, rand=lambda: 0.25) == 1.0
    assert backoff_delay(10, base=0.5, cap=8.0, rand=lambda: 0.5) == 4.0


def test_backoff_never_goes_below_its_floor() -> None:
    assert backoff_delay(3, base=2.0, cap=120.0, floor=2.0, rand=lambda: 0.0) == 2.0
    assert backoff_delay(3, base=2.0, cap=120.0, floor=2.0, rand=lambda: 0.5) == 8.0


def test_backoff_of_a_huge_attempt_is_the_cap() -> None:
    assert backoff_delay(10_000, base=0.5, cap=8.0, rand=lambda: 1.0) == 8.0
    assert backoff_delay(-1, base=0.5, cap=8.0, rand=lambda: 1.0) == 0.5


def test_backoff_with_real_randomness_stays_in_range() -> None:
    delays = [backoff_delay(2, base=0.5, cap=8.0) for _ in range(200)]
    assert all(0.0 <= d < 2.0 for d in delays)
    assert len(set(delays)) > 100  # jittered, not constant


@pytest.mark.parametrize(
    ("attempts", "rand", "seconds"),
    [(1, 0.0, 2.0), (1, 0.99, 2.0), (3, 0.0, 2.0), (3, 0.5, 4.0), (10, 0.5, 60.0)],
)
def test_the_jobs_figures(
    monkeypatch: pytest.MonkeyPatch, attempts: int, rand: float, seconds: float
) -> None:
    """Base 2 s, cap 120 s (settings), at least one base step."""
    monkeypatch.setattr(random, "random", lambda: rand)
    assert job_backoff_seconds(attempts) == seconds


def test_a_schedule_step_is_jittered_both_ways() -> None:
    assert jittered(300, spread=0.2, rng=Extreme(True)) == 360.0
    assert jittered(300, spread=0.2, rng=Extreme(False)) == 240.0
    assert all(240.0 <= jittered(300, spread=0.2) <= 360.0 for _ in range(100))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 2 ", 2.0),
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("99999999999999", RETRY_AFTER_CAP_SECONDS),
        ("-5", None),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("1e3", None),
    ],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    at = datetime(2015, 10, 21, 7, 28, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=at - 10) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=at + 10) == 0.0
    # RFC 5322's "-0000" (no zone information): HTTP dates are UTC.
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", now=at - 4) == 4.0
    assert parse_retry_after("Wed, 32 Foo 2015 07:28:00 GMT", now=at) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=at - 10**9) == (
        RETRY_AFTER_CAP_SECONDS
    )


def test_retry_after_has_a_cap_of_the_callers_choosing() -> None:
    assert parse_retry_after("120", cap=30.0) == 30.0
    assert parse_retry_after("20", cap=30.0) == 20.0
