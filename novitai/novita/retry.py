"""Pure pieces of the retry policy: backoff with full jitter, and Retry-After."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry).

    Capped exponential backoff with full jitter (AWS Architecture blog): uniform in
    [0, min(cap, base * 2**attempt)), so that clients that failed together do not retry together.
    """
    ceiling = min(cap, base * 2 ** min(max(attempt, 0), 62))
    return max(0.0, ceiling * rand())


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After (RFC 9110 §10.2.3) in seconds from now: delay-seconds or an HTTP-date.

    None when absent or unreadable (the caller then uses its own backoff). A date in the past
    is 0. Fractional seconds are accepted although the RFC only allows integers.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, inf
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" (RFC 5322 "unknown zone"): HTTP dates are UTC
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
