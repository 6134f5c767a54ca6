"""Scenario 1: a burst of instances created at once through the API, followed to their
instance.ready webhooks (measured from the outside: the receiver's clock and the sandbox's)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.client import Http, calls_between, create_body, in_parallel
from bench.receiver import Receiver
from bench.report import percentile, rounded
from bench.stack import say


@dataclass
class BurstResult:
    label: str
    requested: int
    created: list[str] = field(default_factory=list)  # instance ids answered 202
    post_errors: Counter[str] = field(default_factory=Counter)
    post_seconds: float = 0.0
    wall_seconds: float | None = None  # first POST sent -> last instance.ready received
    ready: int = 0
    failed: int = 0
    missing: int = 0
    duplicate_webhooks: int = 0
    duplicate_gpus: int = 0
    invalid_signatures: int = 0
    lags: list[float] = field(default_factory=list)
    # lag = detection (app answering -> novitai marks it ready) + delivery (-> webhook received)
    detections: list[float] = field(default_factory=list)
    deliveries: list[float] = field(default_factory=list)
    to_ready: list[float] = field(default_factory=list)
    # Deliveries of instances marked ready while creates were still being sent, and after.
    deliveries_while_creating: list[float] = field(default_factory=list)
    deliveries_after_creating: list[float] = field(default_factory=list)
    creates_seconds: float | None = None  # first POST -> the last create call reached Novita
    # When monitoring passes began (their first list call, from the sandbox's call log).
    pass_starts: list[float] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(self.post_errors.values()) + self.failed + self.missing

    @property
    def calls_per_ready(self) -> float | None:
        return round(sum(self.calls.values()) / self.ready, 3) if self.ready else None

    def calls_per_ready_by_endpoint(self) -> dict[str, float]:
        return {k: round(v / self.ready, 3) for k, v in self.calls.items()} if self.ready else {}

    def lag(self, q: float) -> float | None:
        return rounded(percentile(self.lags, q))

    def pass_intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.pass_starts, self.pass_starts[1:], strict=False)]

    def as_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "created": len(self.created),
            "post_errors": dict(self.post_errors),
            "post_seconds": round(self.post_seconds, 2),
            "wall_seconds": rounded(self.wall_seconds),
            "ready": self.ready,
            "failed": self.failed,
            "missing": self.missing,
            "duplicate_webhooks": self.duplicate_webhooks,
            "duplicate_gpus": self.duplicate_gpus,
            "invalid_signatures": self.invalid_signatures,
            "lag_seconds": {**summary(self.lags), "min": rounded(min(self.lags, default=None))},
            "detection_seconds": summary(self.detections),
            "delivery_seconds": summary(self.deliveries),
            "creates_seconds": rounded(self.creates_seconds),
            "delivery_seconds_while_creating": summary(self.deliveries_while_creating),
            "delivery_seconds_after_creating": summary(self.deliveries_after_creating),
            "request_to_ready_webhook_seconds": summary(self.to_ready),
            "monitor_passes": len(self.pass_starts),
            "monitor_pass_interval_seconds": summary(self.pass_intervals()),
            "novita_calls": self.calls,
            "novita_calls_per_ready": self.calls_per_ready,
            "novita_calls_per_ready_by_endpoint": self.calls_per_ready_by_endpoint(),
        }


def run_burst(  # noqa: C901, PLR0915 - the scenario's script, step by step
    *,
    label: str,
    count: int,
    api: Http,
    sandbox: Http,
    receiver: Receiver,
    timeout: float = 240.0,
    fields: dict[str, Any] | None = None,
) -> BurstResult:
    """`count` creates at once (16 threads), each with the receiver's URL (and `fields` added to
    the body), followed to their first instance.ready webhook."""
    result = BurstResult(label=label, requested=count)
    stats_before = sandbox.get("/_sandbox/stats")
    sent_at: dict[str, float] = {}

    def create(i: int) -> None:
        body = create_body(f"{label}-{i:04d}", receiver.url, **(fields or {}))
        started = time.time()
        try:
            status, answer = api.call("POST", "/api/v1/instances/", body)
        except OSError as exc:
            result.post_errors[type(exc).__name__] += 1
            return
        if status == 202:
            result.created.append(answer["id"])
            sent_at[answer["id"]] = started
        else:
            result.post_errors[str(status)] += 1

    t0 = time.time()
    in_parallel(range(count), create, threads=16)
    result.post_seconds = time.time() - t0
    say(
        f"  {label}: {len(result.created)}/{count} created through the API in "
        f"{result.post_seconds:.1f} s; waiting for instance.ready webhooks"
    )
    ids = set(result.created)
    deadline, next_note = time.time() + timeout, 0.0
    while True:
        ready = {a.instance_id for a in receiver.of("instance.ready", ids)}
        failed = {a.instance_id for a in receiver.of("instance.failed", ids)}
        now = time.time()
        if len(ready | failed) >= len(ids) or now > deadline:
            break
        if now >= next_note:
            say(f"    {now - t0:5.1f} s  ready {len(ready)}/{len(ids)}  failed {len(failed)}")
            next_note = now + 5
        time.sleep(0.1)
    stats_after = sandbox.get("/_sandbox/stats")

    arrivals = receiver.of("instance.ready", ids)
    first: dict[str, Any] = {}
    for arrival in sorted(arrivals, key=lambda a: a.at):
        first.setdefault(arrival.instance_id, arrival)
    result.ready = len(first)
    result.failed = len({a.instance_id for a in receiver.of("instance.failed", ids)} - set(first))
    result.missing = len(ids) - result.ready - result.failed
    result.duplicate_webhooks = len(arrivals) - len(first)
    result.invalid_signatures = sum(
        1 for a in receiver.of("instance.ready", ids) if not a.signature_valid
    )
    if first:
        result.wall_seconds = max(a.at for a in first.values()) - t0
    upstream = {i["id"]: i for i in sandbox.get("/_sandbox/instances")["instances"]}
    calls = sandbox.get(f"/_sandbox/calls?since={t0}")["calls"]
    creates = [c["at"] for c in calls if c["path"].endswith("/gpu/instance/create")]
    creates_until = max(creates, default=t0)
    result.creates_seconds = creates_until - t0
    result.pass_starts = pass_starts(
        [c["at"] for c in calls if c["path"].endswith("/gpu/instances") and c["method"] == "GET"]
    )
    for instance_id, arrival in first.items():
        app_ready = (upstream.get(arrival.novita_instance_id) or {}).get("app_ready_at")
        if app_ready is not None:
            result.lags.append(arrival.at - float(app_ready))
            if arrival.ready_at is not None:
                result.detections.append(arrival.ready_at - float(app_ready))
        if arrival.ready_at is not None:
            delivery = arrival.at - arrival.ready_at
            result.deliveries.append(delivery)
            if arrival.ready_at <= creates_until:
                result.deliveries_while_creating.append(delivery)
            else:
                result.deliveries_after_creating.append(delivery)
        result.to_ready.append(arrival.at - sent_at[instance_id])
    # Two GPUs for one request: more than one create accepted under one instance's name.
    creates = stats_after["creates_by_name"]
    result.duplicate_gpus = sum(max(0, creates.get(upstream_name(i), 0) - 1) for i in ids)
    result.calls = calls_between(stats_before, stats_after)
    return result


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "max": rounded(max(values, default=None)),
    }


def pass_starts(list_calls: list[float], quiet: float = 1.0) -> list[float]:
    """A monitoring pass lists page after page: a list call after `quiet` seconds without one
    begins a pass."""
    starts: list[float] = []
    last = None
    for at in sorted(list_calls):
        if last is None or at - last >= quiet:
            starts.append(at)
        last = at
    return starts


def upstream_name(instance_id: str) -> str:
    """The name novitai gives the instance on Novita (instances.services.novita_name_for)."""
    from instances.services import novita_name_for

    return novita_name_for(uuid.UUID(instance_id))


def delete_all(
    *, ids: list[str], api: Http, receiver: Receiver, timeout: float = 180.0
) -> dict[str, Any]:
    """Deletes the burst's instances through the API and waits for their instance.terminated."""
    started = time.time()
    statuses = Counter(
        in_parallel(ids, lambda i: api.call("DELETE", f"/api/v1/instances/{i}/")[0], threads=8)
    )
    wanted = set(ids)
    deadline, next_note = time.time() + timeout, 0.0
    while True:
        done = {a.instance_id for a in receiver.of("instance.terminated", wanted)}
        now = time.time()
        if len(done) >= len(wanted) or now > deadline:
            break
        if now >= next_note:
            say(f"    {now - started:5.1f} s  terminated {len(done)}/{len(wanted)}")
            next_note = now + 5
        time.sleep(0.2)
    return {
        "delete_answers": {str(k): v for k, v in statuses.items()},
        "terminated": len(done),
        "seconds": round(time.time() - started, 1),
    }
