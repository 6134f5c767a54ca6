"""Two beats send every periodic task no more often than one does (novitai/beat.py).

Real schedulers (the one CELERY_BEAT_SCHEDULER names) tick on a clock the test moves, with the
schedule of settings, and publish for real, to a redis-server of the test's own; what reached
the broker is counted per task. The tick claims live in the shared cache, as they do in
production."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.beat import PersistentScheduler
from celery.utils.imports import symbol_by_name
from django.conf import settings

from novitai.celery import app
from tests.outages import RedisServer, broker_at, free_port, redis_caches

BROKER_DB = 10
# What `celery beat` runs: the scheduler that settings name.
Scheduler: type[PersistentScheduler] = symbol_by_name(app.conf.beat_scheduler)
QUEUES = ("monitor", "webhooks", "default", "provision")


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    with broker_at(f"{server.url}/{BROKER_DB}"):
        yield server
    server.kill()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(datetime(2026, 12, 1, 0, 0, 0, 400_000, tzinfo=UTC))
    monkeypatch.setattr(app, "now", clock)
    return clock


def sent(server: RedisServer) -> Counter[str]:
    """Tasks waiting in the broker, by name (and the broker emptied)."""
    client = server.client(BROKER_DB)
    names: Counter[str] = Counter()
    for queue in QUEUES:
        for raw in client.lrange(queue, 0, -1):
            names[json.loads(raw)["headers"]["task"]] += 1
        client.delete(queue)
    return names


def due_ticks(scheduler: PersistentScheduler) -> float:
    """Sends what is due (tick() sends one task per call, then answers 0); returns how long beat
    would sleep (at most 10 ms less than nothing: beat wakes that much early)."""
    for _ in range(20):
        sleep = scheduler.tick()
        if sleep != 0:
            break
    return sleep


def run_beats(clock: Clock, tmp_path: Path, *, beats: int, seconds: float) -> None:
    """`beats` schedulers, the n-th started 1.3 * n seconds after the first, each run as
    `celery beat` runs it (tick, then sleep as long as tick says) for `seconds` of the clock."""
    end = clock.now + timedelta(seconds=seconds)
    starts = [clock.now + timedelta(seconds=1.3 * n) for n in range(beats)]
    schedulers: list[PersistentScheduler] = []
    while clock.now < end:
        while len(schedulers) < beats and clock.now >= starts[len(schedulers)]:
            path = tmp_path / f"beat-{clock.now.timestamp()}-{len(schedulers)}"
            schedulers.append(Scheduler(app=app, schedule_filename=str(path)))
        sleeps = [(end - clock.now).total_seconds()]
        if len(schedulers) < beats:
            sleeps.append((starts[len(schedulers)] - clock.now).total_seconds())
        sleeps.extend(due_ticks(scheduler) for scheduler in schedulers)
        clock.now += timedelta(seconds=max(min(sleeps), 0.011))
    for scheduler in schedulers:
        scheduler.close()


def interval_of(entry: dict[str, Any]) -> float:
    return float(entry["schedule"])


@pytest.mark.parametrize("hourly", [False, True], ids=["up-to-10-minutes", "hourly"])
def test_two_beats_send_each_periodic_task_as_often_as_one(
    clock: Clock, broker: RedisServer, tmp_path: Path, hourly: bool
) -> None:
    """Every entry of CELERY_BEAT_SCHEDULE, for twice its interval: those of 10 minutes or less
    together, the hourly ones apart (two hours of the 3-second monitor would be thousands of
    messages for nothing)."""
    entries = {
        name: entry
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        if (interval_of(entry) > 600) == hourly
    }
    seconds = max(interval_of(entry) for entry in entries.values()) * 2 + 10
    full, app.conf.beat_schedule = app.conf.beat_schedule, entries
    try:
        run_beats(clock, tmp_path, beats=1, seconds=seconds)
        one = sent(broker)
        clock.now += timedelta(days=1)  # other slots
        run_beats(clock, tmp_path, beats=2, seconds=seconds)
        two = sent(broker)
    finally:
        app.conf.beat_schedule = full
    assert set(one) == {entry["task"] for entry in entries.values()}
    for task, count in one.items():
        assert count <= two[task] <= count * 1.1 + 1, (task, count, two[task])


def test_one_beat_loses_no_tick_to_the_claims(
    clock: Clock, broker: RedisServer, tmp_path: Path
) -> None:
    seconds = 300.0
    run_beats(clock, tmp_path, beats=1, seconds=seconds)
    # One tick an interval, each up to 11 ms late (how far run_beats oversleeps).
    interval = settings.MONITOR_INTERVAL_SECONDS
    assert seconds // (interval + 0.011) <= sent(broker)["instances.monitor"] <= seconds // interval


def test_a_tick_is_sent_when_the_cache_cannot_claim_it(
    clock: Clock, broker: RedisServer, tmp_path: Path, settings: Any
) -> None:
    """A cache that cannot be reached claims nothing: both beats send (safe, only wasteful)."""
    settings.CACHES = redis_caches(f"redis://127.0.0.1:{free_port()}")
    run_beats(clock, tmp_path, beats=2, seconds=30)
    assert sent(broker)["instances.monitor"] == 2 * 9  # at 3, 6, … 27 s, and 1.3 s later


def test_a_follow_up_the_monitor_sends_itself_is_not_a_tick(
    clock: Clock, broker: RedisServer, tmp_path: Path
) -> None:
    """The monitor's "again" (a pass that saw a skipped tick runs the next at once) is sent by the
    task, not by beat: no slot is claimed for it, and beat's next tick still goes."""
    from instances.tasks import monitor

    schedule = tmp_path / "beat"
    beat = Scheduler(app=app, schedule_filename=str(schedule))
    clock.now += timedelta(seconds=3)
    due_ticks(beat)  # the tick: sent
    monitor.apply_async(expires=10)  # what monitor() sends when its pass says "again"
    clock.now += timedelta(seconds=3)
    due_ticks(beat)  # the next tick: sent too, in its own slot
    beat.close()
    assert sent(broker)["instances.monitor"] == 3


def test_every_entry_is_named_after_its_task() -> None:
    """One convention for beat keys: the task's name (the tick claims are per entry name)."""
    assert {name: entry["task"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items()} == {
        "catalog.sync": "catalog.sync",
        "instances.monitor": "instances.monitor",
        "instances.idle_stop": "instances.idle_stop",
        "instances.money_sweep": "instances.money_sweep",
        "instances.reconcile": "instances.reconcile",
        "storage.image_saves_follow": "storage.image_saves_follow",
        "instances.access_details_read": "instances.access_details_read",
        "jobs.sweep": "jobs.sweep",
        "instances.idempotency_keys_purge": "instances.idempotency_keys_purge",
        "instances.capacity_sweep": "instances.capacity_sweep",
        "webhooks.sweep": "webhooks.sweep",
    }
