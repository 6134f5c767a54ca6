"""The shared request-rate ceiling: a fake clock for exact windows, the real cache underneath."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita.errors import RateLimited
from novitai.novita.ratelimit import RateLimiter
from tests.novita.conftest import another_client, api_calls


class FakeClock:
    """Time that moves only when someone sleeps. Starts mid-window, as real calls do."""

    def __init__(self, start: float = 1_900_000_000.4) -> None:
        self.now = start
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(clock: FakeClock, per_second: float, max_wait: float = 10.0) -> RateLimiter:
    return RateLimiter(
        per_second=per_second, max_wait=max_wait, sleep=clock.sleep, clock=clock.time
    )


def test_two_processes_share_one_ceiling() -> None:
    clock = FakeClock()
    first, second = limiter(clock, 5), limiter(clock, 5)
    taken_at = []
    for n in range(12):
        (first if n % 2 else second).acquire()
        taken_at.append(clock.now)
    per_window = Counter(math.floor(t) for t in taken_at)
    assert sorted(per_window.values(), reverse=True) == [5, 5, 2]
    assert len(clock.slept) == 2  # once per full window, until the next one


def test_a_caller_waits_for_a_slot_up_to_max_wait() -> None:
    clock = FakeClock()
    slow = limiter(clock, 2, max_wait=0.3)
    slow.acquire()
    slow.acquire()
    with pytest.raises(RateLimited) as caught:
        slow.acquire()  # the next window is 0.6 s away
    assert 0.6 <= caught.value.retry_after <= 0.7
    assert clock.slept == []


def test_a_rate_below_one_per_second_uses_longer_windows() -> None:
    clock = FakeClock(start=1_900_000_000.0)
    slow = limiter(clock, 0.5)
    assert (slow.window, slow.slots) == (2.0, 1)
    slow.acquire()
    slow.acquire()
    assert 2.0 <= clock.now - 1_900_000_000.0 <= 2.2


def test_pause_holds_back_every_limiter_until_it_runs_out() -> None:
    clock = FakeClock()
    start = clock.now
    limiter(clock, 100).pause(3.0)
    assert limiter(clock, 100).acquire() == pytest.approx(3.0)
    assert clock.now >= start + 3.0


def test_a_pause_longer_than_max_wait_raises() -> None:
    clock = FakeClock()
    limiter(clock, 100).pause(30.0)
    with pytest.raises(RateLimited) as caught:
        limiter(clock, 100, max_wait=5.0).acquire()
    assert caught.value.retry_after == pytest.approx(30.0)


def test_zero_means_no_ceiling() -> None:
    clock = FakeClock()
    free = limiter(clock, 0)
    for _ in range(100):
        assert free.acquire() == 0.0
    assert clock.slept == []


def test_the_client_keeps_under_the_ceiling(novita_settings: SandboxControl, fast: Any) -> None:
    fast.NOVITA_RATE_LIMIT_PER_SECOND = 4
    first, second = another_client(), another_client()
    for n in range(9):
        (first if n % 2 else second).list_clusters()
    calls = api_calls(novita_settings, "/clusters")
    assert [c["status"] for c in calls] == [200] * 9  # waited, never failed
    # Nine calls at four per window need three windows: the last comes a second after the first.
    assert calls[-1]["at"] - calls[0]["at"] >= 0.9
