"""State shared by every process that talks to Novita, kept in the "novita" cache alias.

With REDIS_URL that is django-redis: `add` is SET NX and `incr` is INCRBY, both atomic, and INCRBY
keeps the key's TTL. In embedded mode it is Django's FileBasedCache, shared by the processes of one
machine, where `add` is check-then-write and `incr` is get-then-set: neither is atomic, so two
processes racing can lose an increment. What that costs is said where it matters (breaker.py,
ratelimit.py): a little slack in a limit, never a wrong answer about Novita.

A cache that fails (Redis down) must not stop every call to Novita, nor turn into an exception
outside the NovitaError hierarchy, nor lift every limit: `guarded` runs the operation on a cache of
this process alone while the shared one fails (logged once and counted by novitai/outages.py), so
the breaker and the rate ceiling go on per process (the ceiling at its local rate, see
ratelimit.py) until Redis answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache

from novitai.outages import cache_guard_or

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


# Novita's shared state while the "novita" cache is unreachable: this process's own (LocMemCache
# is thread-safe, and its instances of one name share their storage).
_LOCAL = LocMemCache("novitai-novita-local", {"TIMEOUT": None, "OPTIONS": {"MAX_ENTRIES": 1000}})


def local_cache() -> BaseCache:
    return _LOCAL


def is_local(cache: BaseCache) -> bool:
    return cache is _LOCAL


def guarded(what: str, operation: Callable[[BaseCache], T]) -> T:
    """`operation` on the shared cache; while that fails, on this process's own. Any error of
    the shared cache counts (its backend's own errors are not ours to type)."""
    shared = novita_cache()
    return cache_guard_or(
        f"novita_{what.replace(' ', '_')}",
        lambda: operation(shared),
        lambda: operation(_LOCAL),
        cache=shared,
        errors=(Exception,),
    )
