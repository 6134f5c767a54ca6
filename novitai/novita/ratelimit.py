"""A ceiling on the request rate to Novita, shared by every process (the "novita" cache).

A fixed-window counter: the time is cut into windows of `window` seconds (1 s, or 1/rate when the
rate is below one per second), each allowing `slots` requests. A call takes a slot with one
`add` and one `incr` (O(1), no matter how many callers); when the window is full it sleeps until
the next one, and gives up with RateLimited after `max_wait` seconds. Four counter keys are
reused in turn, each living two windows, so the cache holds at most four of them (the file
cache lists its folder on every write: it must stay small).

A 429 from Novita pauses every process: `pause(seconds)` stores a "not before" time that
`acquire` waits out, so no process sends before a Retry-After has run out.

With Redis the counter is exact. In embedded mode (file cache) `incr` is get-then-set, so two
processes taking a slot at the same instant may both get it: the ceiling is approximate there,
exceeded by at most the number of processes racing inside one window. That is acceptable for
the single machine embedded mode runs on; Novita's own 429 is the backstop.

While the shared cache is unreachable (Redis down) each process keeps its own counter and pause
(shared.guarded) at `local_per_second` (NOVITA_RATE_LIMIT_LOCAL_PER_SECOND, by default a quarter
of the shared rate): the processes together may then exceed the ceiling a little, but never
send without limit, and a 429's Retry-After still holds back the process that received it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from django.core.cache.backends.base import BaseCache

from novitai.novita.errors import RateLimited
from novitai.novita.shared import KEY_PREFIX, guarded, incr_with_ttl, is_local

SLOT_KEY = f"{KEY_PREFIX}ratelimit:window"
PAUSE_KEY = f"{KEY_PREFIX}ratelimit:pause_until"
SLOT_KEYS = 4


class RateLimiter:
    def __init__(
        self,
        *,
        per_second: float,
        max_wait: float,
        local_per_second: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = per_second > 0
        self.window = max(1.0, 1.0 / per_second) if self.enabled else 1.0
        self.slots = max(1, math.floor(per_second * self.window)) if self.enabled else 0
        local = per_second / 4 if local_per_second is None else min(local_per_second, per_second)
        # Slots of one window for this process alone (the shared cache unreachable); at least one.
        self.local_slots = max(1, math.floor(local * self.window)) if self.enabled else 0
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock  # wall clock: windows are shared with other processes

    def acquire(self, *, max_wait: float | None = None, endpoint: str = "") -> float:
        """Take a slot, waiting for one if need be; return the seconds waited."""
        if not self.enabled:
            return 0.0
        limit = self.max_wait if max_wait is None else max_wait
        started = self._clock()
        while True:
            wait = guarded("rate limit", self._try_take)
            waited = self._clock() - started
            if wait <= 0:
                return waited
            if waited + wait > limit:
                raise RateLimited(
                    f"novita request-rate ceiling: no slot within {limit:.1f}s",
                    retry_after=wait,
                    endpoint=endpoint,
                )
            self._sleep(wait)

    def _try_take(self, cache: BaseCache) -> float:
        """0 when a slot was taken, else the seconds to wait before trying again."""
        now = self._clock()
        pause_until = cache.get(PAUSE_KEY)
        if pause_until is not None and float(pause_until) > now:
            return float(pause_until) - now
        window = math.floor(now / self.window)
        key = f"{SLOT_KEY}:{window % SLOT_KEYS}"
        slots = self.local_slots if is_local(cache) else self.slots
        if incr_with_ttl(cache, key, 2 * self.window) <= slots:
            return 0.0
        # Spread the waiters over the first tenth of the next window.
        return (window + 1) * self.window - now + random.uniform(0, self.window / 10)

    def pause(self, seconds: float) -> None:
        """Nobody sends for `seconds` (Novita's Retry-After)."""
        if seconds <= 0:
            return

        def store(cache: BaseCache) -> None:
            until = self._clock() + seconds
            current = cache.get(PAUSE_KEY)
            if current is None or float(current) < until:
                cache.set(PAUSE_KEY, until, seconds + 1)

        guarded("rate limit pause", store)
