"""The retry policy, one for every caller: backoff with jitter, and Retry-After.

Used by the Novita client (novitai/novita/client.py: full jitter, base 0.5 s, cap 8 s), the jobs
(jobs/services.py: full jitter with a floor of one base step, base 2 s, cap 120 s) and the
webhooks (webhooks/services.py: a fixed schedule, each step jittered by ±20 %). Each caller keeps
its own figures (settings); what they share is how a delay is drawn and how Retry-After is read.
Standard library only: the Novita client imports it.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

# A Retry-After is honoured up to this long (a server asking for days is answered in hours, and
# no caller's arithmetic meets a date past the year 9999).
RETRY_AFTER_CAP_SECONDS = 6 * 3600.0

_SECONDS_RE = re.compile(r"^\d+(?:\.\d*)?$")


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    floor: float = 0.0,
    rand: Callable[[], float] | None = None,
) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry).

    Capped exponential backoff with full jitter (AWS Architecture blog): uniform in
    [0, min(cap, base * 2**attempt)), so that clients that failed together do not retry together;
    never less than `floor`.
    """
    ceiling = min(cap, base * 2 ** min(max(attempt, 0), 62))
    return max(floor, ceiling * (rand or random.random)())


def jittered(seconds: float, *, spread: float, rng: random.Random | None = None) -> float:
    """`seconds` times a factor drawn uniformly from [1 - spread, 1 + spread] (a schedule's step,
    spread out so that deliveries that failed together do not come back together)."""
    return seconds * (rng or random).uniform(1 - spread, 1 + spread)


def parse_retry_after(
    value: str | None, *, now: float | None = None, cap: float = RETRY_AFTER_CAP_SECONDS
) -> float | None:
    """Retry-After (RFC 9110 §10.2.3) in seconds from now, at most `cap`: delay-seconds or an
    HTTP-date.

    None when absent or unreadable (the caller then uses its own backoff): a negative or
    non-numeric delay, a date that does not parse. A date in the past is 0. A fraction of a
    second is accepted although the RFC only allows integers.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS_RE.match(text):
        return min(float(text), cap)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" (RFC 5322 "unknown zone"): HTTP dates are UTC
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), cap)
