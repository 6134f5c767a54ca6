"""Redis down under the client: the rate ceiling and the breaker go on per process (a cache of the
process's own) instead of letting every call through. The caches point at a closed port."""

from __future__ import annotations

from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita.errors import CircuitOpen
from novitai.novita.ratelimit import RateLimiter
from tests.novita.conftest import another_client, api_calls, sample
from tests.novita.test_ratelimit import FakeClock, gaps
from tests.outages import free_port, redis_caches


@pytest.fixture
def redis_down(settings: Any) -> Any:
    settings.CACHES = redis_caches(f"redis://127.0.0.1:{free_port()}")
    return settings


def test_without_the_shared_cache_each_process_keeps_its_local_ceiling(redis_down: Any) -> None:
    clock = FakeClock()
    # NOVITA_RATE_LIMIT_LOCAL_PER_SECOND's default: a quarter of the shared rate, 2 a second.
    limiter = RateLimiter(per_second=8, max_wait=10, sleep=clock.sleep, clock=clock.time)
    errors = sample("novitai_cache_errors_total", {"operation": "novita_rate_limit"})
    taken_at = []
    for _ in range(5):
        limiter.acquire()
        taken_at.append(clock.now)
    assert gaps(taken_at) == [0.5] * 4
    assert len(clock.slept) == 4  # each after the first waited for its slot
    assert sample("novitai_cache_errors_total", {"operation": "novita_rate_limit"}) == errors + 9


def test_without_the_shared_cache_a_retry_after_still_holds_this_process_back(
    redis_down: Any,
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_second=100, max_wait=10, sleep=clock.sleep, clock=clock.time)
    start = clock.now
    limiter.pause(3.0)
    assert limiter.acquire() == pytest.approx(3.0)
    assert clock.now >= start + 3.0


def test_without_the_shared_cache_the_breaker_opens_per_process(
    novita_settings: SandboxControl, fast: Any, redis_down: Any
) -> None:
    fast.NOVITA_BREAKER_FAILURE_THRESHOLD = 3
    novita_settings.set_faults(fail_next=[{"path": "/clusters", "status": 503, "count": -1}])
    client = another_client()
    with pytest.raises(CircuitOpen):
        client.list_clusters()  # three attempts fail; the fourth finds the breaker open
    with pytest.raises(CircuitOpen):
        client.list_clusters()  # and nothing more is sent
    assert len(api_calls(novita_settings, "/clusters")) == 3
    assert client.breaker_snapshot().state.value == "open"
