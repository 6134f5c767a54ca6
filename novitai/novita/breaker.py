"""A circuit breaker shared by every process (Fowler's, with state in the "novita" cache).

closed     calls go through; each 5xx, timeout or connection error adds one to a shared counter
           of consecutive failures, any other answer resets it (a 404, a 400 about capacity or a
           429 is Novita answering, not Novita failing).
open       after `failure_threshold` consecutive failures: every call raises CircuitOpen at once,
           without touching the network, for `reset_seconds`.
half_open  then one call (in all processes together: `cache.add` on a probe key is the lock) goes
           through as a probe; the others still raise CircuitOpen. The probe's success closes
           the breaker; its failure opens it again for another `reset_seconds`.

Keys: `breaker:opened_at` (when it opened; absent when closed), `breaker:failures` (the counter)
and `breaker:probe` (the probe lock, with a TTL so that a probe that died frees it).

In embedded mode (file cache) the counter's increments can race and lose one, so the breaker may
open a failure or two late; the probe lock can, rarely, let two probes through. Neither costs
more than a request.

While the shared cache is unreachable (Redis down) each process keeps these keys in a cache of its
own (shared.guarded): the breaker goes on working per process, opening after `failure_threshold`
failures of that process, until Redis answers again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from django.core.cache.backends.base import BaseCache

from novitai.novita.errors import CircuitOpen
from novitai.novita.shared import KEY_PREFIX, guarded, incr_with_ttl

logger = logging.getLogger("novitai.novita")

OPENED_KEY = f"{KEY_PREFIX}breaker:opened_at"
FAILURES_KEY = f"{KEY_PREFIX}breaker:failures"
PROBE_KEY = f"{KEY_PREFIX}breaker:probe"

# Failures further apart than this are not "consecutive": a quiet hour of scattered 502s does not
# open the breaker.
FAILURE_WINDOW_SECONDS = 300.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge_value(self) -> int:
        return {"closed": 0, "open": 1, "half_open": 2}[self.value]


@dataclass(frozen=True)
class BreakerSnapshot:
    state: BreakerState
    consecutive_failures: int
    opened_at: float | None  # unix seconds
    seconds_until_probe: float  # 0 unless open

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "seconds_until_probe": round(self.seconds_until_probe, 1),
        }


@dataclass(frozen=True)
class Ticket:
    """What before_call granted: a normal call, or the half-open probe."""

    probe: bool
    failures_seen: bool  # the counter was non-zero: a success must reset it


class CircuitBreaker:
    def __init__(self, *, failure_threshold: int, reset_seconds: float, probe_ttl: float) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.reset_seconds = reset_seconds
        self.probe_ttl = probe_ttl

    def snapshot(self) -> BreakerSnapshot:
        return guarded("breaker read", self._snapshot)

    def _snapshot(self, cache: BaseCache) -> BreakerSnapshot:
        values = cache.get_many([OPENED_KEY, FAILURES_KEY])
        opened_at = values.get(OPENED_KEY)
        failures = int(values.get(FAILURES_KEY) or 0)
        if opened_at is None:
            return BreakerSnapshot(BreakerState.CLOSED, failures, None, 0.0)
        remaining = float(opened_at) + self.reset_seconds - time.time()
        if remaining > 0:
            return BreakerSnapshot(BreakerState.OPEN, failures, float(opened_at), remaining)
        return BreakerSnapshot(BreakerState.HALF_OPEN, failures, float(opened_at), 0.0)

    def before_call(self, endpoint: str = "") -> Ticket:
        """Raise CircuitOpen, or grant the call (one cache read when closed)."""
        snap = self.snapshot()
        if snap.state is BreakerState.CLOSED:
            return Ticket(probe=False, failures_seen=bool(snap.consecutive_failures))
        if snap.state is BreakerState.OPEN:
            raise CircuitOpen(
                f"Novita circuit breaker is open after {snap.consecutive_failures} consecutive "
                f"failures; next probe in {snap.seconds_until_probe:.1f}s",
                retry_after=snap.seconds_until_probe,
                endpoint=endpoint,
            )
        if not guarded("breaker probe lock", self._take_probe):
            raise CircuitOpen(
                "Novita circuit breaker is half-open and its probe is in flight",
                retry_after=min(self.probe_ttl, self.reset_seconds),
                endpoint=endpoint,
            )
        logger.warning("novita circuit breaker half-open: letting one probe through (%s)", endpoint)
        return Ticket(probe=True, failures_seen=True)

    def _take_probe(self, cache: BaseCache) -> bool:
        return bool(cache.add(PROBE_KEY, time.time(), self.probe_ttl))

    def record_success(self, ticket: Ticket) -> None:
        if ticket.probe:
            guarded(
                "breaker close",
                lambda cache: cache.delete_many([OPENED_KEY, FAILURES_KEY, PROBE_KEY]),
            )
            logger.warning("novita circuit breaker closed: the probe succeeded")
        elif ticket.failures_seen:
            guarded("breaker reset", lambda cache: cache.delete(FAILURES_KEY))

    def record_failure(self, ticket: Ticket, cause: str) -> None:
        if ticket.probe:
            guarded("breaker reopen", self._reopen)
            logger.warning("novita circuit breaker reopened: the probe failed (%s)", cause)
            return
        failures = guarded(
            "breaker count",
            lambda cache: incr_with_ttl(cache, FAILURES_KEY, FAILURE_WINDOW_SECONDS),
        )
        if failures >= self.failure_threshold and guarded(
            "breaker open", lambda cache: bool(cache.add(OPENED_KEY, time.time(), None))
        ):
            logger.warning(
                "novita circuit breaker opened after %d consecutive failures (last: %s); "
                "calls fail fast for %.0fs",
                failures,
                cause,
                self.reset_seconds,
            )

    def _reopen(self, cache: BaseCache) -> None:
        cache.set(OPENED_KEY, time.time(), None)
        cache.delete(PROBE_KEY)

    def release(self, ticket: Ticket) -> None:
        """The granted call was never sent (throttled locally): free the probe lock."""
        if ticket.probe:
            guarded("breaker release", lambda cache: cache.delete(PROBE_KEY))
