"""Pure pieces of the retry policy: backoff with full jitter, Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from novitai.novita.retry import backoff_delay, parse_retry_after


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n, base=0.5, cap=8.0, rand=lambda: 1.0) for n in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_is_full_jitter_below_the_ceiling() -> None:
    assert backoff_delay(3, base=0.5, cap=8.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, base=0.5, cap=8.0, rand=lambda: 0.25) == 1.0
    assert backoff_delay(10, base=0.5, cap=8.0, rand=lambda: 0.5) == 4.0


def test_backoff_of_a_huge_attempt_is_the_cap() -> None:
    assert backoff_delay(10_000, base=0.5, cap=8.0, rand=lambda: 1.0) == 8.0
    assert backoff_delay(-1, base=0.5, cap=8.0, rand=lambda: 1.0) == 0.5


def test_backoff_with_real_randomness_stays_in_range() -> None:
    delays = [backoff_delay(2, base=0.5, cap=8.0) for _ in range(200)]
    assert all(0.0 <= d < 2.0 for d in delays)
    assert len(set(delays)) > 100  # jittered, not constant


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 2 ", 2.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
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
