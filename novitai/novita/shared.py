"""State shared by every process that talks to Novita, kept in the "novita" cache alias.

With REDIS_URL that is django-redis: `add` is SET NX and `incr` is INCRBY, both atomic, and INCRBY
keeps the key's TTL. In embedded mode it is Django's FileBasedCache, shared by the processes of one
machine, where `add` is check-then-write and `incr` is get-then-set: neither is atomic, so two
processes racing can lose an increment. What that costs is said where it matters (breaker.py,
ratelimit.py): a little slack in a limit, never a wrong answer about Novita.

A cache that fails (Redis down) must not stop every call to Novita, nor turn into an exception
outside the NovitaError hierarchy: the guards here log and fall back to "allow".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

logger = logging.getLogger("novitai.novita")

CACHE_ALIAS = "novita"
KEY_PREFIX = "novita:"

T = TypeVar("T")


def novita_cache() -> BaseCache:
    # Not stored: Django's cache handles are per thread.
    return caches[CACHE_ALIAS]


def has_atomic_incr(cache: BaseCache) -> bool:
    """Django's BaseCache.incr (used by FileBasedCache) is get-then-set, and resets the TTL."""
    return type(cache).incr is not BaseCache.incr


def incr_with_ttl(cache: BaseCache, key: str, ttl: float) -> int:
    """Increment a counter that expires `ttl` seconds after it was created."""
    if not has_atomic_incr(cache):
        # Not atomic (see the module docstring), but keeps the TTL, which BaseCache.incr does not.
        value = int(cache.get(key, 0)) + 1
        cache.set(key, value, ttl)
        return value
    cache.add(key, 0, ttl)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.add(key, 0, ttl)
        return int(cache.incr(key))


def guarded(what: str, operation: Callable[[], T], fallback: T) -> T:
    """Run a cache operation; on a cache failure log it and return `fallback`."""
    try:
        return operation()
    except Exception:  # the cache backend's own errors (redis, OSError) are not ours to type
        logger.warning(
            "novita %s: the novita cache failed; carrying on without it", what, exc_info=True
        )
        return fallback
