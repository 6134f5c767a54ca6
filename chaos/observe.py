"""Reading what the oracle judges, and waiting for the system to quiesce.

    snapshot = take(harness, apis, receivers, phases)   # Postgres, the sandbox, the suite's records
    outcome = settle(harness, apis, receivers, phases, timeout=90)

Rows, events and deliveries are read from Postgres with the ORM (the runner is set up against
the suite's database), upstream instances from the sandbox's control API.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.stack import say
from chaos.harness import Harness
from chaos.oracle import Delivery, Row, Snapshot, Upstream, Verdict, judge
from chaos.receiver import ChaosReceiver
from chaos.traffic import Api

Phases = list[tuple[str, float, float]]


def take(
    harness: Harness, apis: list[Api], receivers: list[ChaosReceiver], phases: Phases
) -> Snapshot:
    from django.conf import settings
    from django.db import connection
    from django.db.models import F

    from instances.lifecycle import WEBHOOK_EVENTS
    from instances.models import Instance, InstanceEvent
    from webhooks.models import WebhookDelivery

    connection.close()  # whatever an outage left of the last connection
    rows = [
        Row(str(i["id"]), i["status"], i["novita_instance_id"], i["failure_reason"])
        for i in Instance.objects.values("id", "status", "novita_instance_id", "failure_reason")
    ]
    events = [
        (str(instance_id), WEBHOOK_EVENTS[to_status])
        for instance_id, to_status in InstanceEvent.objects.filter(
            to_status__in=list(WEBHOOK_EVENTS)
        )
        .exclude(from_status=F("to_status"))
        .exclude(instance__webhook_url="")
        .values_list("instance_id", "to_status")
    ]
    deliveries = [
        Delivery(
            d["event_id"], d["event_type"], str(d["instance_id"]), d["target_url"], d["status"]
        )
        for d in WebhookDelivery.objects.values(
            "event_id", "event_type", "instance_id", "target_url", "status"
        )
    ]
    upstream = [
        Upstream(str(i["id"]), str(i["name"]), live=i["status"] != "removed")
        for i in harness.sandbox.instances()
    ]
    return Snapshot(
        prefix=settings.NOVITA_NAME_PREFIX,
        rows=rows,
        upstream=upstream,
        events=events,
        deliveries=deliveries,
        received=[r for receiver in receivers for r in receiver.received()],
        receiver_urls=frozenset(receiver.url for receiver in receivers),
        responses=[r for api in apis for r in api.responses],
        accepted=[a for api in apis for a in api.accepted.values()],
        phases=list(phases),
    )


@dataclass
class Settled:
    verdict: Verdict
    at: float | None  # when the state converged for good (None: not within the timeout)
    checks: int


def settle(
    harness: Harness,
    apis: list[Api],
    receivers: list[ChaosReceiver],
    phases: Phases,
    *,
    timeout: float,
    hold: float = 7.0,
) -> Settled:
    """Judges every 2 s until the state has converged (Verdict.converged) and still is `hold`
    seconds later (two monitoring passes: a duplicate or an orphan made meanwhile would show),
    or `timeout` ran out. Returns the last verdict, with every violation (history included)."""
    deadline = time.monotonic() + timeout
    held_since: float | None = None
    checks = 0
    while True:
        for crash in harness.restart_crashed():
            say(f"  {crash} exited by itself: started again")
        verdict = judge(take(harness, apis, receivers, phases))
        checks += 1
        now = time.time()
        if verdict.converged:
            held_since = held_since or now
            if now - held_since >= hold:
                return Settled(verdict, held_since, checks)
        else:
            held_since = None
        if time.monotonic() > deadline:
            return Settled(verdict, held_since if verdict.converged else None, checks)
        time.sleep(2.0)


def create_to_ready(ids: list[str]) -> list[float]:
    """Seconds from each instance's create request to its first ready (those that got there)."""
    from django.db import connection
    from django.db.models import Min, Q

    from instances.models import Instance

    connection.close()
    rows = (
        Instance.objects.filter(pk__in=ids)
        .annotate(first_ready=Min("events__at", filter=Q(events__to_status="ready")))
        .values_list("created_at", "first_ready")
    )
    return sorted((r - c).total_seconds() for c, r in rows if c is not None and r is not None)


def list_calls(harness: Harness, since: float, until: float | None = None) -> list[float]:
    """When each listing of Novita's instances (a monitoring pass's page) arrived."""
    return [
        c["at"]
        for c in harness.sandbox.calls(since=since)
        if c["method"] == "GET"
        and c["path"] == "/gpu/instances"
        and (until is None or c["at"] < until)
    ]


def calls_by_endpoint(harness: Harness, since: float, until: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in harness.sandbox.calls(since=since):
        if call["at"] < until:
            key = f"{call['method']} {call['path']}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def wait_for(check: Any, *, timeout: float, interval: float = 0.5) -> Any:
    """`check()` until it is truthy (returned) or `timeout` ran out (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
