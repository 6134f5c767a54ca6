"""A ceiling on the request rate to Novita, shared by every process (the "novita" cache).

The ceiling is stated as Novita states it, calls per window (`NOVITA_RATE_LIMIT=100/60s`), or as
a rate (`10/s`, `1.6667`), and it is kept exactly, fractions included: a GCRA (the generic cell
rate algorithm, a token bucket kept as one timestamp). One call is allowed every
`interval = window / calls` seconds on average, and up to `burst` calls may go at once after a
quiet spell (`NOVITA_RATE_LIMIT_BURST`, default 1: over any stretch of time t at most
burst + t / interval calls are sent, so with a burst of 1 a window of Novita's never sees more
than its calls). The state is one "theoretical arrival time"; a call takes a slot when that time
is at most (burst - 1) intervals ahead of now, and pushes it on by one interval.

Priority: creates, the GETs that check an instance, and every change go first ("high"); listings
that only watch ("low": the monitor's instance listing, the catalog's products and clusters,
bills, metrics) wait while a high call is queued. A high call that must wait records when it
will go (`high_until`); a low call waits until then. Nothing is reserved, so a queue of high
calls can hold listings back only while it lasts.

Where the state lives, and why it is exact there:
- Redis (REDIS_URL, or embedded mode's own Redis): one Lua script per decision, atomic across
  every process and host (the hosts' clocks are the callers' own, as NTP keeps them).
- A file cache (embedded mode without Redis): the state in the cache, read and written under an
  `flock` (NOVITAI_VAR_DIR/locks), exact across the processes of the one machine embedded mode
  runs on.
- While Redis is unreachable, each process keeps its own bucket (shared.guarded) at
  `local_per_second` (NOVITA_RATE_LIMIT_LOCAL_PER_SECOND, by default a quarter of the shared
  rate): the processes together may then exceed the ceiling a little, but never send without
  limit.

A 429 from Novita pauses every process: `pause(seconds)` stores a "not before" time that
`acquire` waits out, so no process sends before a Retry-After has run out.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import BaseCache

from novitai.novita.ceiling import Ceiling
from novitai.novita.errors import RateLimited
from novitai.novita.shared import KEY_PREFIX, guarded, has_atomic_incr, is_local

BUCKET_KEY = f"{KEY_PREFIX}ratelimit:bucket"
PAUSE_KEY = f"{KEY_PREFIX}ratelimit:pause_until"
LOCK_FILE = "novita-ratelimit.lock"
# A wait shorter than a microsecond is none (float rounding at epoch magnitudes).
EPSILON = 1e-6


class Priority(enum.Enum):
    HIGH = "high"
    LOW = "low"


def decide(
    state: dict[str, float], now: float, interval: float, burst: int, priority: Priority
) -> float:
    """One GCRA decision on `state` ({"tat", "high_until"}, changed in place): 0 when the call
    takes a slot, else the seconds to wait. The Lua script below is this function, line by line."""
    tat = max(state.get("tat", now), now)
    high_until = state.get("high_until", 0.0)
    if priority is Priority.LOW and high_until > now:
        return high_until - now
    wait = tat - (burst - 1) * interval - now
    if wait > EPSILON:
        if priority is Priority.HIGH and now + wait > high_until:
            state["high_until"] = now + wait
        return wait
    state["tat"] = tat + interval
    return 0.0


# KEYS[1]: the bucket (a hash: tat, high_until). ARGV: now, interval, burst, high ("1"/"0"),
# ttl in ms. Returns the wait as a string (Lua numbers become integers on the way out).
_DECIDE_LUA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local high = ARGV[4] == "1"
local ttl = tonumber(ARGV[5])
local tat = tonumber(redis.call("HGET", KEYS[1], "tat") or now)
local high_until = tonumber(redis.call("HGET", KEYS[1], "high_until") or 0)
if tat < now then tat = now end
if (not high) and high_until > now then return tostring(high_until - now) end
local wait = tat - (burst - 1) * interval - now
if wait > 0.000001 then
  if high and now + wait > high_until then
    redis.call("HSET", KEYS[1], "high_until", string.format("%.17g", now + wait))
    redis.call("PEXPIRE", KEYS[1], ttl)
  end
  return tostring(wait)
end
redis.call("HSET", KEYS[1], "tat", string.format("%.17g", tat + interval))
redis.call("PEXPIRE", KEYS[1], ttl)
return "0"
"""


class RateLimiter:
    def __init__(
        self,
        *,
        per_second: float | None = None,
        ceiling: Ceiling | None = None,
        burst: int = 1,
        max_wait: float,
        local_per_second: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ceiling is None:
            ceiling = Ceiling(calls=per_second or 0.0)
        self.ceiling = ceiling
        self.enabled = ceiling.calls > 0
        self.interval = ceiling.seconds / ceiling.calls if self.enabled else 0.0
        self.burst = max(1, int(burst))
        rate = ceiling.per_second
        local = rate / 4 if local_per_second is None else min(local_per_second, rate)
        self.local_interval = 1.0 / local if self.enabled and local > 0 else self.interval
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock  # wall clock: the bucket is shared with other processes

    def acquire(
        self,
        *,
        max_wait: float | None = None,
        endpoint: str = "",
        priority: Priority = Priority.HIGH,
    ) -> float:
        """Take a slot, waiting for one if need be; return the seconds waited."""
        if not self.enabled:
            return 0.0
        limit = self.max_wait if max_wait is None else max_wait
        started = self._clock()
        while True:
            wait = guarded("rate limit", lambda cache: self._try_take(cache, priority))
            waited = self._clock() - started
            if wait <= 0:
                return waited
            if waited + wait > limit:
                raise RateLimited(
                    f"novita request-rate ceiling ({self.ceiling}): no slot within {limit:.1f}s",
                    retry_after=wait,
                    endpoint=endpoint,
                )
            # No spread added: a slot is at a known time, and a waiter that came late would
            # leave it unused (the bucket does not save what nobody took).
            self._sleep(wait)

    def _try_take(self, cache: BaseCache, priority: Priority) -> float:
        """0 when a slot was taken, else the seconds to wait before trying again."""
        now = self._clock()
        pause_until = cache.get(PAUSE_KEY)
        if pause_until is not None and float(pause_until) > now:
            return float(pause_until) - now
        if is_local(cache):
            with _LOCAL_LOCK:
                return _decide_in(cache, now, self.local_interval, self.burst, priority)
        redis = _redis_client(cache)
        if redis is not None:
            args = [repr(now), repr(self.interval), str(self.burst)]
            args += ["1" if priority is Priority.HIGH else "0", str(self._ttl_ms())]
            return float(_script(redis)(keys=[cache.make_key(BUCKET_KEY)], args=args))
        with _file_lock():
            return _decide_in(cache, now, self.interval, self.burst, priority)

    def _ttl_ms(self) -> int:
        # The bucket matters for burst intervals after its last slot; then it may go.
        return max(1000, math.ceil((self.burst + 1) * self.interval * 1000) + 60_000)

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


def _decide_in(
    cache: BaseCache, now: float, interval: float, burst: int, priority: Priority
) -> float:
    """decide() on the bucket kept in `cache` as a dict; the caller holds the lock."""
    raw = cache.get(BUCKET_KEY)
    state = dict(raw) if isinstance(raw, dict) else {}
    wait = decide(state, now, interval, burst, priority)
    cache.set(BUCKET_KEY, state, None)
    return wait


# The bucket of the process's own cache (Redis unreachable) is changed under this lock.
_LOCAL_LOCK = threading.Lock()
_SCRIPTS: dict[int, Any] = {}


def _script(redis: Any) -> Any:
    """The decision as a registered script (EVALSHA, loaded again if Redis forgot it)."""
    key = id(redis.connection_pool)
    if key not in _SCRIPTS:
        _SCRIPTS[key] = redis.register_script(_DECIDE_LUA)
    return _SCRIPTS[key]


def _redis_client(cache: BaseCache) -> Any | None:
    """The raw client of a django-redis cache (the "novita" alias with REDIS_URL or embedded
    Redis), else None (a file cache)."""
    if not has_atomic_incr(cache):
        return None
    client = getattr(cache, "client", None)
    get_client = getattr(client, "get_client", None)
    return get_client(write=True) if get_client else None


@contextlib.contextmanager
def _file_lock() -> Iterator[None]:
    """An exclusive flock around the bucket's read and write in a file cache (embedded mode
    without Redis, one machine), freed when the block ends or its process dies."""
    directory = Path(settings.VAR_DIR) / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
