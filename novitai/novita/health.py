"""Novita's part of /health/ready: reachability (one cheap call, cached) and the breaker's state.

The reachability answer is cached for HEALTH_CACHE_SECONDS in the shared "novita" cache, so that
probes from every process and every load balancer cost Novita one call per period. While the
breaker is open nothing is sent. Raises (and so reports "down") when Novita is unreachable,
refuses the key, or the breaker is open; the message carries both parts, since a failed check
shows only its error.
"""

from __future__ import annotations

import time
from typing import Any

from novitai.novita.client import get_client
from novitai.novita.errors import CircuitOpen, NovitaError, RateLimited, Unavailable
from novitai.novita.shared import KEY_PREFIX, guarded

HEALTH_CACHE_SECONDS = 15
HEALTH_KEY = f"{KEY_PREFIX}health:reachability"


def novita_health() -> dict[str, Any]:
    client = get_client()
    breaker = client.breaker_snapshot().as_dict()
    reach: dict[str, Any] | None = guarded("health", lambda cache: cache.get(HEALTH_KEY))
    if reach is None:
        if breaker["state"] == "open":
            reach = {"reachable": None, "error": "not probed: the circuit breaker is open"}
        else:
            try:
                latency = client.ping()
            except RateLimited as exc:  # Novita answered: reachable, and busy
                reach = {"reachable": True, "rate_limited": True, "error": str(exc)}
            except CircuitOpen as exc:  # half-open, another process holds the probe
                reach = {"reachable": None, "error": str(exc)}
            except NovitaError as exc:
                reach = {"reachable": False, "error": str(exc)}
            else:
                reach = {"reachable": True, "latency_ms": round(latency * 1000, 1)}
            reach["checked_at"] = round(time.time(), 3)
            stored = reach
            guarded("health", lambda cache: cache.set(HEALTH_KEY, stored, HEALTH_CACHE_SECONDS))
            breaker = client.breaker_snapshot().as_dict()  # the ping may have moved it
    result = {"base_url": client.config.base_url, "breaker": breaker, **reach}
    if breaker["state"] == "open" or reach["reachable"] is False:
        problems = []
        if reach["reachable"] is False:
            problems.append(f"Novita unreachable: {reach['error']}")
        problems.append(
            f"circuit breaker {breaker['state']} "
            f"({breaker['consecutive_failures']} consecutive failures)"
        )
        raise Unavailable("; ".join(problems))
    return result
