"""Per-key rate limit: a fixed-window counter in the shared cache (O(1) per request)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from novitai.outages import cache_guard
from tenants.authentication import TenantPrincipal

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'1200/min' -> (1200, 60)."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[0].lower()]


def window_hit(key: str, *, timeout: int) -> int:
    """Counts one hit on a window's counter and returns the count: one round trip with Redis
    (INCR and EXPIRE pipelined; atomic), add + incr on other caches (not atomic across
    processes there: a little slack, no more). While the cache is unreachable it answers 0: the
    throttle fails open (novitai/outages.py), it never fails the request."""
    return cache_guard("throttle", lambda: _window_hit(key, timeout=timeout), 0, cache=cache)


def _window_hit(key: str, *, timeout: int) -> int:
    client = getattr(cache, "client", None)
    if client is not None and hasattr(client, "get_client"):  # django-redis
        full_key = cache.make_key(key)
        pipe = client.get_client(write=True).pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, timeout)
        count, _ = pipe.execute()
        return int(count)
    cache.add(key, 0, timeout=timeout)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=timeout)
        return 1


class ApiKeyRateThrottle(BaseThrottle):
    scope = "api_key"

    def __init__(self) -> None:
        self.num_requests, self.duration = parse_rate(
            settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]
        )
        self._wait = 0.0

    def _ident(self, request: Request) -> str:
        user = request.user
        if isinstance(user, TenantPrincipal):
            return user.pk
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return f"ip:{self.get_ident(request)}"

    def allow_request(self, request: Request, view: Any) -> bool:
        now = time.time()
        window = int(now // self.duration)
        key = f"throttle:{self.scope}:{self._ident(request)}:{window}"
        count = window_hit(key, timeout=self.duration + 1)
        if count <= self.num_requests:
            return True
        self._wait = (window + 1) * self.duration - now
        return False

    def wait(self) -> float:
        return max(1.0, self._wait)
