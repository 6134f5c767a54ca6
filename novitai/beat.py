"""Celery beat's scheduler (CELERY_BEAT_SCHEDULER): a second beat sends nothing twice.

Beat is meant to be one process, but a second one happens (a rolling deploy, a stuck pod), and
each beat sends every periodic task on its own clock: with two, the monitoring pass, which lists
every page of Novita's instances, ran 40 times a minute instead of 20. So before it sends a tick
of an entry that runs every `interval` seconds, the scheduler claims that tick's slot,
floor(t / interval), in the shared cache (one SET NX with a TTL); a tick whose slot another beat
already claimed is not sent. A claim lives two intervals, and the beat that claims slot k drops
the claim of slot k - 2 (no beat can ask for it any more), so that the file cache of embedded
mode, which lists its folder on every write, holds two per entry, not one per tick ever sent.

One beat never loses a tick to this: t is the time the tick was reserved (the entry's new
`last_run_at`), and beat reserves a tick only once `last_run_at + interval` has passed, so two
ticks of one beat are at least an interval apart and fall in different slots. With several beats
each slot is sent once, by whichever came first.

Only beat's ticks are claimed: what a task sends itself (the monitor's immediate follow-up after
a skipped tick, the idle stop's next batch) is not a tick. A cache that cannot be reached claims
nothing and the tick is sent (novitai/outages.py): every periodic task is safe to run twice, this
only saves the work. Entries on a crontab (none today) are sent as beat sends them.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import schedule as every
from celery.utils.time import maybe_make_aware

logger = logging.getLogger(__name__)

TICK_KEY = "beat:tick:{name}:{slot}"


def tick_slot(entry: ScheduleEntry) -> tuple[float, int] | None:
    """(interval, slot) of the entry's latest reserved tick; None when it has no fixed interval."""
    if not isinstance(entry.schedule, every) or entry.schedule.relative:
        return None
    interval = entry.schedule.run_every.total_seconds()
    if interval <= 0:
        return None
    reserved_at = maybe_make_aware(entry.last_run_at).timestamp()
    return interval, math.floor(reserved_at / interval)


def tick_claim(entry: ScheduleEntry) -> bool:
    """Claims the entry's current slot for this beat: False when another beat has it."""
    from django.core.cache import cache

    from novitai.outages import cache_guard

    found = tick_slot(entry)
    if found is None:
        return True
    interval, slot = found
    owner = f"{socket.gethostname()}:{os.getpid()}"
    timeout = max(1, math.ceil(2 * interval))

    def claim() -> bool:
        if not cache.add(TICK_KEY.format(name=entry.name, slot=slot), owner, timeout=timeout):
            return False
        cache.delete(TICK_KEY.format(name=entry.name, slot=slot - 2))
        return True

    return cache_guard("beat_tick", claim, True, cache=cache)


class Scheduler(PersistentScheduler):
    """celery's PersistentScheduler (the schedule file, --schedule), ticks claimed first."""

    _warned = False

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        # tick() reserves the entry before it applies it: the reserved one has this tick's time.
        reserved = self.schedule.get(entry.name, entry)
        if not tick_claim(reserved):
            log = logger.debug if Scheduler._warned else logger.warning
            Scheduler._warned = True
            log(
                "beat: %s not sent: another beat already sent this interval's tick "
                "(is a second beat running?)",
                entry.name,
            )
            return
        super().apply_entry(entry, producer=producer)
