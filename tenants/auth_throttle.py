"""Failed API authentication, throttled per client address.

DRF's throttles run after authentication, so a caller guessing keys only ever got 401s. Here
every key that fails counts against its client address (`client_ip`) in a fixed window of the
shared cache (`window_hit`). Once an address has failed API_AUTH_FAILURE_RATE times in the
window, whatever key it sends is answered 429 with Retry-After (the end of the window) before
it is looked at — a correct key too: a guess that happens to be right is refused as well. Other
addresses are not affected.

A cache that fails (Redis down) fails open: keys are verified as usual and
`novitai_auth_throttle_failed_open_total` counts every check and record skipped; the outage itself
is logged once per process (novitai/outages.py). Authentication never becomes a 500.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from prometheus_client import Counter
from rest_framework.exceptions import Throttled

from novitai.outages import cache_guard_or

logger = logging.getLogger(__name__)

AUTH_FAILURES = Counter(
    "novitai_api_auth_failures",
    "API requests whose key failed: invalid (answered 401), throttled (answered 429).",
    ["outcome"],
)
FAILED_OPEN = Counter(
    "novitai_auth_throttle_failed_open",
    "Failed-authentication throttle checks skipped because the cache failed.",
    ["operation"],
)


def _window(address: str, now: float) -> tuple[str, int, int, float]:
    """The window's counter key, the limit, the period, and the seconds left in the window."""
    from tenants.throttling import parse_rate  # it imports tenants.authentication, which us

    limit, period = parse_rate(settings.API_AUTH_FAILURE_RATE)
    window = int(now // period)
    return f"throttle:auth-failures:{address}:{window}", limit, period, (window + 1) * period - now


def _failed_open(operation: str, address: str) -> int:
    """Counts a check or record skipped without the cache; 0 failures as far as anyone knows."""
    FAILED_OPEN.labels(operation=operation).inc()
    logger.info(
        "failed-authentication throttle: no cache (%s for %s); not throttling", operation, address
    )
    return 0


def auth_throttle_check(*, address: str, now: float | None = None) -> None:
    """Raises Throttled (429) while `address` is at its limit of failures in this window."""
    key, limit, _, left = _window(address, time.time() if now is None else now)
    failures = cache_guard_or(
        "auth_throttle",
        lambda: int(cache.get(key) or 0),
        lambda: _failed_open("check", address),
        cache=cache,
    )
    if failures >= limit:
        AUTH_FAILURES.labels(outcome="throttled").inc()
        # DRF adds "Expected available in <wait> seconds." to the message.
        raise Throttled(
            wait=max(1, math.ceil(left)),
            detail="Too many failed authentications from this address.",
        )


def auth_failure_record(*, address: str, now: float | None = None) -> None:
    """Counts one failed key from `address` (its request is still answered 401)."""
    key, _, period, _ = _window(address, time.time() if now is None else now)
    AUTH_FAILURES.labels(outcome="invalid").inc()
    logger.info("API authentication failed from %s", address)
    from tenants.throttling import window_count  # see _window

    cache_guard_or(
        "auth_throttle",
        lambda: window_count(key, timeout=period + 1),
        lambda: _failed_open("record", address),
        cache=cache,
    )
