"""Named caches with statistics every process shares.

`NamedCache("catalog")` wraps one of novitai's Django cache aliases (settings.NOVITAI_CACHES).
Every read through it is counted — hits, misses, expired entries, sets, deletes, clears — in
the cache's own storage, so that web, worker and beat add to the same figures:

- Redis (django-redis): a hash beside the alias' keys, incremented atomically (HINCRBY). Its
  key carries cache version 0, so it is neither counted as an entry nor removed by a clear,
  which deletes the alias' version-1 keys by prefix (never FLUSHDB: the database may be shared).
- File (embedded mode): a JSON file in the alias' folder, updated under an flock. Django's
  FileBasedCache only lists and clears its `*.djcache` files, so the file survives a clear.

Values are stored wrapped with their expiry time: a falsy value is still a hit (django-prometheus'
FileBasedCache.get answers `cached or default`), an entry past its expiry is counted as expired,
and the expiry can be compared against an injected `now` in tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.filebased import FileBasedCache
from prometheus_client import Counter

from catalog.errors import CacheKeyNotFound, CacheNotFound
from novitai.outages import cache_guard

T = TypeVar("T")

CACHE_REQUESTS = Counter(
    "novitai_cache_requests",
    "Lookups through novitai's named caches.",
    ["cache", "result"],
)

COUNTERS = ("hits", "misses", "expired", "sets", "deletes", "clears")
_MARK = "novitai-cache/1"
# The backend keeps an entry this much longer than its TTL, so that a read after the expiry
# can still tell "expired" from "never stored"; the backend then drops it by itself.
_EXPIRED_GRACE_SECONDS = 60
_STATS_KEY = "__stats__"
_STATS_VERSION = 0


@dataclass(frozen=True)
class CacheStats:
    name: str
    backend: str  # "redis" | "file" | the backend's class name
    entries: int | None  # None when the backend cannot count its keys
    hits: int
    misses: int
    expired: int  # misses that found an entry past its expiry
    sets: int
    deletes: int
    clears: int

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return round(self.hits / lookups, 4) if lookups else 0.0


# --- where the counters live -------------------------------------------------------------------


def _is_redis(cache: BaseCache) -> bool:
    return hasattr(cache, "delete_pattern") and hasattr(cache, "iter_keys")


class _RedisCounters:
    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.key = cache.make_key(_STATS_KEY, version=_STATS_VERSION)

    def incr(self, name: str) -> None:
        self.cache.client.get_client(write=True).hincrby(self.key, name, 1)

    def reset(self) -> None:
        self.cache.client.get_client(write=True).delete(self.key)

    def read(self) -> dict[str, int]:
        raw = self.cache.client.get_client(write=False).hgetall(self.key)
        return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}


class _FileCounters:
    def __init__(self, cache: FileBasedCache) -> None:
        directory = str(getattr(cache, "_dir"))  # noqa: B009 - private, not in the stubs
        self.path = os.path.join(directory, "_stats.json")
        self.lock_path = os.path.join(directory, "_stats.lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, int]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            return {}
        return {k: int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def incr(self, name: str) -> None:
        with self._locked():
            data = self._load()
            data[name] = data.get(name, 0) + 1
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)

    def read(self) -> dict[str, int]:
        with self._locked():
            return self._load()

    def reset(self) -> None:
        with self._locked(), contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class _KeyCounters:
    """Any other backend (LocMem in a test, say): counters as version-0 keys of the cache."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    def incr(self, name: str) -> None:
        key = f"{_STATS_KEY}:{name}"
        self.cache.add(key, 0, timeout=None, version=_STATS_VERSION)
        try:
            self.cache.incr(key, version=_STATS_VERSION)
        except ValueError:  # cleared in between
            self.cache.set(key, 1, timeout=None, version=_STATS_VERSION)

    def read(self) -> dict[str, int]:
        return {
            name: int(self.cache.get(f"{_STATS_KEY}:{name}", 0, version=_STATS_VERSION))
            for name in COUNTERS
        }

    def reset(self) -> None:
        for name in COUNTERS:
            self.cache.delete(f"{_STATS_KEY}:{name}", version=_STATS_VERSION)


# --- the wrapper ---------------------------------------------------------------------------------


class NamedCache:
    """One of novitai's caches, with shared statistics. Cheap to create; hold it briefly."""

    def __init__(self, name: str) -> None:
        if name not in settings.NOVITAI_CACHES:
            raise CacheNotFound(
                f"No cache named {name!r}. Caches: {', '.join(settings.NOVITAI_CACHES)}."
            )
        self.name = name

    @property
    def backend(self) -> BaseCache:
        return caches[self.name]  # per thread: never keep it beyond a request or task

    @property
    def _counters(self) -> _RedisCounters | _FileCounters | _KeyCounters:
        cache = self.backend
        if _is_redis(cache):
            return _RedisCounters(cache)
        if isinstance(cache, FileBasedCache):
            return _FileCounters(cache)
        return _KeyCounters(cache)

    def _count(self, counter: str) -> None:
        # Statistics are not worth a failed request: lost while the cache is unreachable.
        cache_guard("cache_stats", lambda: self._counters.incr(counter), None, cache=self.backend)

    def _guard(self, call: Callable[[], T], fallback: T) -> T:
        """A lookup or a store; while the cache is unreachable a miss, or a store not made
        (novitai/outages.py): the caller computes what it would have read. The operator's
        calls (stats, clear, delete) are not guarded: the API answers 503 for them."""
        return cache_guard(self.name, call, fallback, cache=self.backend)

    def get(self, key: str, default: Any = None, *, now: float | None = None) -> Any:
        now = time.time() if now is None else now
        backend = self.backend
        raw = self._guard(lambda: backend.get(key), None)
        if isinstance(raw, tuple) and len(raw) == 3 and raw[0] == _MARK:
            _, value, expires_at = raw
            if expires_at is None or now < expires_at:
                return self._hit(value)
            self._count("expired")
            self._guard(lambda: backend.delete(key), False)
        elif raw is not None:  # written by code that does not go through NamedCache
            return self._hit(raw)
        self._count("misses")
        CACHE_REQUESTS.labels(cache=self.name, result="miss").inc()
        return default

    def _hit(self, value: Any) -> Any:
        self._count("hits")
        CACHE_REQUESTS.labels(cache=self.name, result="hit").inc()
        return value

    def set(self, key: str, value: Any, ttl: float | None, *, now: float | None = None) -> None:
        """Store `value` for `ttl` seconds (None: until cleared)."""
        now = time.time() if now is None else now
        expires_at = None if ttl is None else now + ttl
        timeout = None if ttl is None else math.ceil(ttl) + _EXPIRED_GRACE_SECONDS
        backend = self.backend
        self._guard(lambda: backend.set(key, (_MARK, value, expires_at), timeout=timeout), None)
        self._count("sets")

    def get_or_set(
        self, key: str, compute: Callable[[], T], ttl: float | None, *, now: float | None = None
    ) -> T:
        sentinel = object()
        value = self.get(key, sentinel, now=now)
        if value is sentinel:
            value = compute()
            self.set(key, value, ttl, now=now)
        return cast(T, value)

    def delete(self, key: str) -> bool:
        deleted = bool(self.backend.delete(key))
        if deleted:
            self._count("deletes")
        return deleted

    def clear(self) -> None:
        """Remove this cache's entries only (its statistics stay, with one more clear)."""
        cache = self.backend
        if _is_redis(cache):
            cast(Any, cache).delete_pattern("*")
        elif isinstance(cache, FileBasedCache):
            cache.clear()
        else:
            counts = self._counters.read()
            cache.clear()
            for name, value in counts.items():
                cache.set(f"{_STATS_KEY}:{name}", value, timeout=None, version=_STATS_VERSION)
        self._count("clears")

    def stats_reset(self) -> None:
        """Start the counters again from 0."""
        self._counters.reset()

    def entries(self) -> int | None:
        cache = self.backend
        if _is_redis(cache):
            return sum(1 for _ in cast(Any, cache).iter_keys("*"))
        if isinstance(cache, FileBasedCache):
            return len(cast(Any, cache)._list_cache_files())
        return None

    def stats(self) -> CacheStats:
        cache = self.backend
        backend = (
            "redis"
            if _is_redis(cache)
            else "file"
            if isinstance(cache, FileBasedCache)
            else type(cache).__name__
        )
        counts = self._counters.read()
        return CacheStats(
            name=self.name,
            backend=backend,
            entries=self.entries(),
            **{counter: counts.get(counter, 0) for counter in COUNTERS},
        )


# --- what the API offers ---------------------------------------------------------------------


def cache_stats_list() -> list[CacheStats]:
    return [NamedCache(name).stats() for name in settings.NOVITAI_CACHES]


def cache_stats_get(*, name: str) -> CacheStats:
    return NamedCache(name).stats()


def cache_clear(*, name: str | None = None) -> list[str]:
    """Clear one named cache, or all of novitai's; answers the names cleared."""
    names = [NamedCache(name).name] if name is not None else list(settings.NOVITAI_CACHES)
    for each in names:
        NamedCache(each).clear()
    return names


def cache_key_delete(*, name: str, key: str) -> None:
    if not NamedCache(name).delete(key):
        raise CacheKeyNotFound(f"No key {key!r} in the {name!r} cache.")
