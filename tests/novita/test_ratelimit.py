"""The shared request-rate ceiling: a fake clock for exact times, the real cache underneath (Redis
with its Lua script under REDIS_URL, the file cache under its flock in embedded mode)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita.ceiling import Ceiling
from novitai.novita.errors import RateLimited
from novitai.novita.ratelimit import Priority, RateLimiter, decide
from novitai.novita.shared import novita_cache
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


def limiter(
    clock: FakeClock,
    per_second: float | None = None,
    max_wait: float = 10.0,
    *,
    ceiling: str | None = None,
    burst: int = 1,
) -> RateLimiter:
    return RateLimiter(
        per_second=per_second,
        ceiling=Ceiling.parse(ceiling) if ceiling else None,
        burst=burst,
        max_wait=max_wait,
        sleep=clock.sleep,
        clock=clock.time,
    )


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize(
    ("text", "calls", "seconds"),
    [
        ("100/60s", 100, 60),
        ("600/min", 600, 60),
        ("10/s", 10, 1),
        ("10/1s", 10, 1),
        ("3600/h", 3600, 3600),
        ("1.6667", 1.6667, 1),
        ("0", 0, 1),
        (" 100 / 60 s ", 100, 60),
    ],
)
def test_a_ceiling_is_read_as_novita_states_it(text: str, calls: float, seconds: float) -> None:
    assert Ceiling.parse(text) == Ceiling(calls=calls, seconds=seconds)


@pytest.mark.parametrize("text", ["", "fast", "100/0s", "-1", "100/60x", "1/2/3", "nan"])
def test_a_ceiling_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ceiling"):
        Ceiling.parse(text)


def test_two_processes_share_one_ceiling_of_100_per_60_seconds() -> None:
    clock = FakeClock()
    first, second = limiter(clock, ceiling="100/60s"), limiter(clock, ceiling="100/60s")
    taken_at = []
    for n in range(12):
        (first if n % 2 else second).acquire()
        taken_at.append(clock.now)
    # One call every 0.6 s, whichever process asks: the 100/60 s asked for, not 1 a second.
    assert gaps(taken_at) == [0.6] * 11


def test_no_window_of_the_ceiling_ever_holds_more_than_its_calls() -> None:
    clock = FakeClock()
    limiters = [limiter(clock, ceiling="100/60s") for _ in range(3)]
    taken_at = []
    for _ in range(250):
        random.choice(limiters).acquire()
        taken_at.append(clock.now)
    # Half-open windows of 60 s from each call on, less 0.1 ms: at 1.9e9 s a double resolves
    # 0.24 µs, and 100 gaps of 0.6 s add up to a hair under 60 s.
    busiest = max(sum(1 for t in taken_at if s <= t < s + 60 - 1e-4) for s in taken_at)
    assert busiest == 100
    assert taken_at[-1] - taken_at[0] == pytest.approx(249 * 0.6)


def test_a_fractional_rate_is_kept_not_truncated() -> None:
    clock = FakeClock()
    slow = limiter(clock, 1.6667)
    taken_at = []
    for _ in range(6):
        slow.acquire()
        taken_at.append(clock.now)
    assert gaps(taken_at) == [round(1 / 1.6667, 6)] * 5  # 100 a minute, not 60


def test_a_burst_goes_at_once_after_a_quiet_spell_then_the_rate_holds() -> None:
    clock = FakeClock()
    bursty = limiter(clock, ceiling="10/s", burst=4)
    taken_at = []
    for _ in range(7):
        bursty.acquire()
        taken_at.append(clock.now)
    assert gaps(taken_at) == [0.0, 0.0, 0.0, 0.1, 0.1, 0.1]


def test_a_caller_waits_for_a_slot_up_to_max_wait() -> None:
    clock = FakeClock()
    slow = limiter(clock, 2, max_wait=0.3)
    slow.acquire()
    with pytest.raises(RateLimited) as caught:
        slow.acquire()  # the next slot is 0.5 s away
    assert caught.value.retry_after == pytest.approx(0.5)
    assert clock.slept == []


def test_a_listing_waits_while_a_create_is_queued() -> None:
    state: dict[str, float] = {}
    assert decide(state, 100.0, 1.0, 1, Priority.LOW) == 0.0  # a listing takes the slot at 100
    assert decide(state, 100.2, 1.0, 1, Priority.HIGH) == pytest.approx(0.8)  # a create queues
    # A listing asking before the create's turn waits for it, even where it could have gone.
    assert decide(state, 100.5, 1.0, 1, Priority.LOW) == pytest.approx(0.5)
    assert decide(state, 101.0, 1.0, 1, Priority.HIGH) == 0.0  # the create goes at 101
    assert decide(state, 101.0, 1.0, 1, Priority.LOW) == pytest.approx(1.0)  # then the listing
    assert decide(state, 102.0, 1.0, 1, Priority.LOW) == 0.0


def test_the_shared_bucket_decides_as_decide_does() -> None:
    """The Lua script (Redis) and the flock'd file cache give the pure function's answers."""
    clock = FakeClock()
    shared = limiter(clock, ceiling="5/s", burst=2)
    state: dict[str, float] = {}
    rng = random.Random(7)
    for _ in range(200):
        clock.now += rng.choice([0.0, 0.05, 0.1, 0.3])
        priority = rng.choice([Priority.HIGH, Priority.LOW])
        expected = decide(state, clock.now, 0.2, 2, priority)
        assert limiter_wait(shared, priority) == pytest.approx(expected, abs=1e-5)


def limiter_wait(shared: RateLimiter, priority: Priority) -> float:
    return shared._try_take(novita_cache(), priority)


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
    # Nine calls at four a second: the last comes eight quarter-seconds after the first.
    assert calls[-1]["at"] - calls[0]["at"] >= 1.95
