"""Scenario 7: waiting for capacity. The RTX 4090 has no capacity anywhere (the sandbox's switch)
and the catalog has seen it; N instances are created through the API with capacity_wait_seconds
and each is followed to its instance.waiting_for_capacity webhook. Then capacity returns in
steps (the sandbox's `creates`: capacity for S more instances, then none again), each step
followed by a catalog sync (what beat runs every CATALOG_SYNC_INTERVAL_SECONDS), until every
instance is ready.

Measured from the outside: per instance, from the step that gave it capacity (just before the
sandbox's switch) to its instance.ready webhook; the Novita calls (the sandbox's counters) from
the first step to the last ready, per instance obtained; whether capacity went first come,
first served (the instances ready after step k are the k*S oldest).

    capacity on ─ catalog sync ─> capacity sweep (every CAPACITY_SWEEP_INTERVAL_SECONDS) ─>
    create on every acceptable offer ─> boot (5 s + 2 s) ─> a monitoring pass sees it ready
"""

from __future__ import annotations

import time
from typing import Any

from bench.client import Http, calls_between, create_body
from bench.provisioning import start_all
from bench.receiver import Receiver
from bench.report import Scenario, equal, info, percentile, rounded
from bench.spot import _quiet
from bench.stack import Stack, say

PRODUCT_ID = "4090.16c62g.sim"
WAIT_SECONDS = 3600


def run(stack: Stack, *, count: int, step: int, timeout: float = 300.0) -> Scenario:
    say(f"== scenario 7: {count} instances waiting for capacity, capacity back {step} at a time")
    _quiet(stack)
    start_all(stack)
    api_key, secret = stack.tenant()
    sandbox = Http(stack.sandbox_url)
    sandbox.post("/_sandbox/capacity", {"productId": PRODUCT_ID, "available": False})
    stack.manage("catalog_sync")
    receiver = Receiver(secret).start()
    api = Http(stack.web_url, {"Authorization": f"Bearer {api_key}"})
    try:
        result = _wait_and_follow(
            stack,
            api=api,
            sandbox=sandbox,
            receiver=receiver,
            count=count,
            step=step,
            timeout=timeout,
        )
    finally:
        receiver.stop()
    return _scenario(result, count=count, step=step)


def _wait_and_follow(
    stack: Stack,
    *,
    api: Http,
    sandbox: Http,
    receiver: Receiver,
    count: int,
    step: int,
    timeout: float,
) -> dict[str, Any]:
    def post(n: int) -> str:
        body = create_body(f"bench-wait-{n:04d}", receiver.url, capacity_wait_seconds=WAIT_SECONDS)
        status, answer = api.call("POST", "/api/v1/instances/", body)
        if status != 202:
            raise RuntimeError(f"POST /api/v1/instances/: {status} {answer}")
        return str(answer["id"])

    ids = [post(n) for n in range(count)]  # one after another: their order is the queue's
    wanted = set(ids)
    deadline = time.time() + timeout
    while (
        len({a.instance_id for a in receiver.of("instance.waiting_for_capacity", wanted)}) < count
    ):
        if time.time() > deadline:
            break
        time.sleep(0.2)
    waiting = {a.instance_id for a in receiver.of("instance.waiting_for_capacity", wanted)}
    say(f"  {len(waiting)}/{count} waiting for capacity")
    stats_before = sandbox.get("/_sandbox/stats")

    given_at: dict[str, float] = {}  # instance -> when the step that served it began
    fifo_breaks = 0
    steps = 0
    while len(given_at) < count and time.time() < deadline:
        steps += 1
        started = time.time()
        sandbox.post(
            "/_sandbox/capacity", {"productId": PRODUCT_ID, "available": True, "creates": step}
        )
        stack.manage("catalog_sync")
        target = min(count, len(given_at) + step)
        while time.time() < deadline:
            ready = {a.instance_id for a in receiver.of("instance.ready", wanted)}
            if len(ready) >= target:
                break
            time.sleep(0.1)
        for instance_id in ready - set(given_at):
            given_at[instance_id] = started
        oldest = set(ids[: len(given_at)])
        fifo_breaks += len(set(given_at) - oldest)
        say(f"  step {steps}: {len(given_at)}/{count} ready")
    stats_after = sandbox.get("/_sandbox/stats")
    ready_at = {a.instance_id: a.at for a in receiver.of("instance.ready", wanted)}
    lags = [ready_at[i] - given_at[i] for i in given_at if i in ready_at]
    calls = calls_between(stats_before, stats_after)
    obtained = len(given_at)
    waiting_hooks = receiver.of("instance.waiting_for_capacity", wanted)
    return {
        "waiting": len(waiting),
        "obtained": obtained,
        "steps": steps,
        "fifo_breaks": fifo_breaks,
        "waiting_webhooks": len(waiting_hooks),
        "_lags": lags,
        "capacity_to_ready_seconds": {
            "p50": rounded(percentile(lags, 50)),
            "p95": rounded(percentile(lags, 95)),
            "max": rounded(max(lags, default=None)),
        },
        "novita_calls": calls,
        "novita_calls_per_obtained": (
            {k: round(v / obtained, 2) for k, v in calls.items()} if obtained else {}
        ),
        "failed": len(receiver.of("instance.failed", wanted)),
    }


def _scenario(r: dict[str, Any], *, count: int, step: int) -> Scenario:
    scenario = Scenario(
        "7-capacity", f"7. waiting for capacity: {count} waiting, capacity back {step} at a time"
    )
    lags = r.pop("_lags")
    per = r["novita_calls_per_obtained"]
    creates = sum(v for k, v in per.items() if k.endswith("/gpu/instance/create"))
    listing = sum(v for k, v in per.items() if k.endswith("/gpu/instances"))
    scenario.add(
        equal("waiting for capacity", r["waiting"], count),
        equal("instance.waiting_for_capacity webhooks (one each)", r["waiting_webhooks"], count),
        equal("ready once capacity returned", r["obtained"], count),
        equal("failures", r["failed"], 0),
        equal("served out of order (first come, first served)", r["fifo_breaks"], 0),
        info(
            "capacity -> instance.ready p50 / p95",
            _pair(lags),
            note="a catalog sync, a sweep, the creates, 7 s boot, a monitoring pass",
        ),
        info("Novita calls per obtained instance", round(sum(per.values()), 2) if per else None),
        info("  of which creates (the failed ones included)", round(creates, 2)),
        info("  of which the monitoring pass's listing", round(listing, 2)),
        *(info(f"  of which {endpoint}", value) for endpoint, value in per.items()),
    )
    scenario.details = {"instances": count, "step": step, **r}
    return scenario


def _pair(values: list[float]) -> str:
    a, b = percentile(values, 50), percentile(values, 95)
    return "-" if a is None or b is None else f"{a:.2f} / {b:.2f} s"
