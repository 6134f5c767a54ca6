"""--wait: poll an instance (and its events, for the reasons) until it reaches a status.

One line per event to the progress stream, with the time since the command began:

    [  12.4s] provisioning → starting  created: Created on Novita as abc123

Every transition is an event written in the same transaction as the status, so no step is
missed however short it was, and the reasons are novitai's own words. An event's time is its
own (`at`, on the server's clock), placed on the command's clock by the first event, which the
command's own request wrote: two steps one poll apart do not show the same time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from urllib.parse import quote

from novitai.cli import render
from novitai.cli.client import ApiError, Client, Unreachable

EVENTS_PAGE_SIZE = 200
# Where an instance stays until someone (or novitai's recovery) acts: waiting for another
# status ends there.
SETTLED = frozenset({"ready", "stopped", "terminated", "failed", "preempted"})

REACHED, ENDED_ELSEWHERE, TIMED_OUT = 0, 1, 3


@dataclass
class Outcome:
    code: int  # REACHED, ENDED_ELSEWHERE (failed included) or TIMED_OUT
    instance: dict[str, Any]


class Waiter:
    def __init__(  # noqa: PLR0913 - what a wait is told, the options keyword-only
        self,
        client: Client,
        instance_id: str,
        *,
        target: str,
        out: IO[str],
        started: float,
        timeout: float,
        poll_interval: float,
        events_seen: int = 0,
        answered_at: float | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.client = client
        self.path = f"instances/{quote(instance_id, safe='')}/"
        self.target = target
        self.out = out
        self.started = started
        self.deadline = started + timeout
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.events_seen = events_seen
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self.unwell = False
        # When the request that wrote the first new event was answered (None: not ours);
        # then that event's `at` and its place on our clock.
        self.answered_at = answered_at
        self.anchor: tuple[datetime, float] | None = None

    def say(self, text: str, at: float | None = None) -> None:
        """A line stamped with `at` (our clock), or now."""
        stamp = (self.clock() if at is None else at) - self.started
        print(f"[{stamp:7.1f}s] {text}", file=self.out, flush=True)

    def _event_time(self, event: dict[str, Any]) -> float | None:
        """The event's time on our clock, never later than now; None when `at` is unreadable."""
        try:
            at = datetime.fromisoformat(str(event.get("at")))
        except ValueError:
            return None
        now = self.clock()
        if self.anchor is None:
            self.anchor = (at, self.answered_at if self.answered_at is not None else now)
        server_then, ours = self.anchor
        return min(now, ours + (at - server_then).total_seconds())

    def run(self, instance: dict[str, Any]) -> Outcome:
        """`instance`: the representation the request answered (its status is where we are)."""
        while True:
            polled = self._poll()
            if polled is not None:
                instance = polled
                status = str(instance.get("status"))
                if status == self.target:
                    self._reached(instance)
                    return Outcome(REACHED, instance)
                if status in SETTLED:
                    self._elsewhere(instance)
                    return Outcome(ENDED_ELSEWHERE, instance)
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                self.say(
                    f"timed out after {self.timeout:g}s waiting for {self.target}: the instance "
                    f"is {instance.get('status')}; the operation continues on the server"
                )
                return Outcome(TIMED_OUT, instance)
            self.sleep(min(self.poll_interval, remaining))

    # --- one poll ------------------------------------------------------------------------------

    def _poll(self) -> dict[str, Any] | None:
        """The instance now, its new events printed; None when the server did not answer well
        (said once, then waited through).

        The events are read after the instance, so they include its latest transition; when
        they show a newer one, both are read again (a few times at most) rather than a poll
        later."""
        try:
            for _ in range(3):
                instance = self.client.request("GET", self.path)
                if self.unwell:
                    self.say("novitai answers again")
                    self.unwell = False
                latest = self._print_new_events()
                if latest is None or latest == instance.get("status"):
                    break
        except (Unreachable, ApiError) as exc:
            if isinstance(exc, ApiError) and not exc.transient:
                raise
            if not self.unwell:
                self.say(f"{exc}; still waiting")
            self.unwell = True
            return None
        return dict(instance)

    def _print_new_events(self) -> str | None:
        """Prints the events after the first `events_seen`; the last one's to_status."""
        size = EVENTS_PAGE_SIZE
        # The page of the last event seen (it exists), then the following ones.
        number = (self.events_seen - 1) // size + 1 if self.events_seen else 1
        latest: str | None = None
        while True:
            page = self.client.page(f"{self.path}events/", {"page": number, "page_size": size})
            first_index = (number - 1) * size
            for offset, event in enumerate(page.results):
                if first_index + offset < self.events_seen:
                    continue
                self._event(event)
                self.events_seen = first_index + offset + 1
                latest = str(event.get("to_status"))
            if not page.has_next:
                return latest
            number += 1

    def _event(self, event: dict[str, Any]) -> None:
        reason, message = event.get("reason") or "", event.get("message") or ""
        why = f"{reason}: {message}" if message else reason
        self.say(f"{render.transition(event)}  {why}".rstrip(), at=self._event_time(event))

    # --- endings -------------------------------------------------------------------------------

    def _reached(self, instance: dict[str, Any]) -> None:
        endpoints = instance.get("endpoints") or []
        if self.target == "ready" and endpoints:
            for endpoint in endpoints:
                self.say(f"ready: {render.endpoint_line(endpoint)}")
        else:
            self.say(f"{self.target}")

    def _elsewhere(self, instance: dict[str, Any]) -> None:
        status = instance.get("status")
        if status == "failed":
            self.say(f"failed: {instance.get('failure_reason')}: {instance.get('failure_message')}")
        else:
            self.say(f"ended {status}, not {self.target}")
