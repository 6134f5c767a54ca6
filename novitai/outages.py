"""Degrade, never fail, when Redis is down (docs/architecture.md §9: Postgres is the truth).

Nothing novitai keeps in Redis is the truth: the caches can be recomputed from the database, the
throttle's counters and the beat's tick claims only save work, and a wake-up message that the
broker could not take is sent again by a sweeper (the job and delivery rows are the outbox). So
a cache or broker failure must cost the caller its shortcut, never its answer:

    value = cache_guard("catalog_snapshot", lambda: cache.get(key), None, cache=cache)
    sent = broker_guard("job", lambda: app.send_task(...))

`cache_guard` runs one cache operation and, when the cache fails (redis' errors, django-redis'
ConnectionInterrupted, the file cache's OSError), answers `fallback` instead: what the caller
does without the cache. `broker_guard` answers whether the message was sent. Each failure is
counted (novitai_cache_errors_total / novitai_broker_errors_total, by operation); the first
failure of an outage is logged as a warning, the recovery once more, and nothing in between, so
that an outage is two log lines per process, not one per request.

After a failure a process leaves that cache server (or broker) alone for OUTAGE_RETRY_SECONDS:
every call in between answers its fallback at once. A Redis that refuses connections costs a
millisecond either way, but one that hangs (stopped, or gone behind a proxy that still accepts)
would otherwise cost a socket timeout on every call of every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django_redis.exceptions import ConnectionInterrupted
from prometheus_client import Counter
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_ERRORS = Counter(
    "novitai_cache_errors",
    "Cache operations that failed or were skipped while the cache was unreachable; the caller "
    "carried on without the cache.",
    ["operation"],
)
BROKER_ERRORS = Counter(
    "novitai_broker_errors",
    "Messages the broker could not take (or that were not tried while it was unreachable); "
    "the sweepers send them again from the database.",
    ["operation"],
)

# What a cache backend raises when its storage cannot be reached: django-redis re-raises redis'
# own errors (or ConnectionInterrupted), the file cache raises OSError.
CACHE_FAILURES: tuple[type[BaseException], ...] = (RedisError, ConnectionInterrupted, OSError)


@dataclass
class _State:
    since: float = 0.0  # monotonic time of the outage's first failure; 0: reachable
    retry_at: float = 0.0  # before this, calls are not tried
    errors: int = 0


class _Dependency:
    """What one process knows about one dependency: up, or down since when."""

    def __init__(self, kind: str, counter: Counter) -> None:
        self.kind = kind
        self.counter = counter
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def _state(self, location: str) -> _State:
        state = self._states.get(location)
        if state is None:
            with self._lock:
                state = self._states.setdefault(location, _State())
        return state

    def run(
        self,
        location: str,
        operation: str,
        call: Callable[[], T],
        otherwise: Callable[[], T],
        errors: tuple[type[BaseException], ...],
    ) -> T:
        state = self._state(location)
        now = time.monotonic()
        if state.since and now < state.retry_at:
            state.errors += 1
            self.counter.labels(operation=operation).inc()
            return otherwise()
        try:
            result = call()
        except errors as exc:
            self.counter.labels(operation=operation).inc()
            state.retry_at = time.monotonic() + float(settings.OUTAGE_RETRY_SECONDS)
            state.errors += 1
            if not state.since:
                state.since = now
                logger.warning(
                    "%s unreachable (%s: %s); carrying on without it, retried every %gs",
                    self.kind,
                    type(exc).__name__,
                    exc,
                    float(settings.OUTAGE_RETRY_SECONDS),
                    extra={"operation": operation, "dependency": self.kind},
                )
            return otherwise()
        if state.since:
            logger.warning(
                "%s reachable again after %.1fs (%d operation(s) done without it)",
                self.kind,
                time.monotonic() - state.since,
                state.errors,
                extra={"operation": operation, "dependency": self.kind},
            )
            state.since, state.retry_at, state.errors = 0.0, 0.0, 0
        return result

    def down(self, location: str) -> bool:
        return bool(self._state(location).since)


_cache = _Dependency("cache", CACHE_ERRORS)
_broker = _Dependency("broker", BROKER_ERRORS)


def _cache_location(cache: Any) -> str:
    """Caches on one server fail together: django-redis' server, the file cache's folder."""
    where = getattr(cache, "_server", None) or getattr(cache, "_dir", None)
    return str(where) if where is not None else f"{type(cache).__name__}@{id(cache)}"


def cache_guard_or(
    operation: str,
    call: Callable[[], T],
    otherwise: Callable[[], T],
    *,
    cache: Any,
    errors: tuple[type[BaseException], ...] = CACHE_FAILURES,
) -> T:
    """`call()`, or `otherwise()` when the cache fails or is known to be down."""
    return _cache.run(_cache_location(cache), operation, call, otherwise, errors)


def cache_guard(operation: str, call: Callable[[], T], fallback: T, *, cache: Any) -> T:
    """`call()`, or `fallback` when the cache fails or is known to be down."""
    return _cache.run(_cache_location(cache), operation, call, lambda: fallback, CACHE_FAILURES)


def cache_down(cache: Any) -> bool:
    """This process saw the cache fail and has not seen it answer since."""
    return _cache.down(_cache_location(cache))


def broker_guard(operation: str, send: Callable[[], object]) -> bool:
    """Publishes with `send()`; False when the broker did not take the message (the caller
    leaves it to a sweeper). Any error counts: whatever stopped the message, the database row
    that it was to wake a worker up for is still there."""
    from novitai.celery import app

    def sent() -> bool:
        send()
        return True

    return _broker.run(str(app.conf.broker_url), operation, sent, lambda: False, (Exception,))


def outages_forget() -> None:
    """Forget every outage this process saw (each test starts with reachable dependencies)."""
    for dependency in (_cache, _broker):
        dependency._states.clear()
