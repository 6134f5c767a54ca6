"""Scenario 8: provisioning at Novita's own ceiling, 100 calls per 60 s (the original service's
setting), and what novitai lists when nothing moves.

From a quiet state (spot.py's `_quiet`), the stack is started as compose runs it with
NOVITA_RATE_LIMIT=100/60s, and N instances are created at once and followed to their
instance.ready webhooks (scenario 1's burst). Nothing can go faster than the ceiling lets the
calls through, so the floor is

    floor = calls the run made to Novita ÷ (100 / 60 s) + the sandbox's boot (create -> app)

and the figure is the time from the first POST to the last instance.ready; their ratio says how
much of the ceiling novitai left unused (the target: within 10 %). The calls are counted by the
sandbox, by endpoint, so a run that makes more calls than it needs shows that too.

Then, with every instance ready (on demand: nothing in transit), the instance listings Novita
receives are counted for a minute: MONITOR_STEADY_INTERVAL_SECONDS (30) makes that 2, where a
listing every monitoring pass (3 s) made 20. The stack is started again as shipped before the
instances are deleted.
"""

from __future__ import annotations

import time
from typing import Any

from bench.burst import delete_all, run_burst
from bench.client import Http, calls_between
from bench.provisioning import start_all
from bench.receiver import Receiver
from bench.report import Scenario, at_most, equal, info, rounded
from bench.spot import SANDBOX_BOOT, _quiet
from bench.stack import Stack, say

CEILING = "100/60s"
PER_SECOND = 100 / 60
IDLE_SECONDS = 60.0
LISTING = "GET /gpu/instances"


def run(stack: Stack, *, count: int) -> Scenario:
    say(f"== scenario 8: {count} creates at Novita's ceiling of {CEILING}")
    _quiet(stack)
    stack.stop(*[name for name in ("web",) if name in stack.procs])
    shipped = stack.env.get("NOVITA_RATE_LIMIT")
    api_key, secret = stack.tenant()
    # One receiver throughout: the instances' webhook URL is its URL, the deletes' too.
    receiver = Receiver(secret).start()
    try:
        stack.env["NOVITA_RATE_LIMIT"] = CEILING
        try:
            start_all(stack)
            say("  catalog sync")
            stack.manage("catalog_sync")
            api = Http(stack.web_url, {"Authorization": f"Bearer {api_key}"})
            sandbox = Http(stack.sandbox_url)
            result = run_burst(
                label="ceiling", count=count, api=api, sandbox=sandbox, receiver=receiver
            )
            say(f"  {result.ready}/{count} ready in {result.wall_seconds or 0:.1f} s")
            say(f"  counting instance listings for {IDLE_SECONDS:.0f} s with nothing in transit")
            before = sandbox.get("/_sandbox/stats")
            time.sleep(IDLE_SECONDS)
            idle_calls = calls_between(before, sandbox.get("/_sandbox/stats"))
        finally:
            _restore(stack, shipped)
        say(f"  deleting the {len(result.created)} instances (the ceiling as shipped again)")
        api = Http(stack.web_url, {"Authorization": f"Bearer {api_key}"})
        cleanup = delete_all(ids=result.created, api=api, receiver=receiver)
    finally:
        receiver.stop()
    return _scenario(result, idle_calls, cleanup, count=count)


def _restore(stack: Stack, shipped: str | None) -> None:
    for name in ("beat", "worker-events", "worker-webhooks", "worker", "web"):
        if name in stack.procs:
            stack.stop(name)
    if shipped is None:
        stack.env.pop("NOVITA_RATE_LIMIT", None)
    else:
        stack.env["NOVITA_RATE_LIMIT"] = shipped
    start_all(stack)


def _scenario(
    result: Any, idle_calls: dict[str, int], cleanup: dict[str, Any], *, count: int
) -> Scenario:
    calls = sum(result.calls.values())
    floor = calls / PER_SECOND + SANDBOX_BOOT
    wall = result.wall_seconds
    ratio = None if wall is None else rounded(wall / floor, 3)
    listings = idle_calls.get(LISTING, 0) * 60.0 / IDLE_SECONDS
    scenario = Scenario("8-ceiling", f"8. {count} creates at a ceiling of {CEILING}")
    scenario.add(
        equal("ready", result.ready, count),
        info("Novita calls in the run", calls, note=_by_endpoint(result.calls)),
        info(
            "floor: calls ÷ ceiling + boot",
            round(floor, 1),
            "s",
            note=f"{calls} ÷ {PER_SECOND:.4f}/s + {SANDBOX_BOOT:g} s",
        ),
        info("first POST -> last instance.ready", rounded(wall), "s"),
        at_most("ratio to the floor", ratio, 1.10),
        info("instance listings per minute, nothing in transit", round(listings, 1)),
        equal("duplicate GPUs", result.duplicate_gpus, 0),
        equal("failures", result.failures, 0),
    )
    scenario.details = {
        "ceiling": CEILING,
        "run": result.as_json(),
        "idle_calls_per_endpoint": idle_calls,
        "idle_seconds": IDLE_SECONDS,
        "cleanup": cleanup,
    }
    return scenario


def _by_endpoint(calls: dict[str, int]) -> str:
    return ", ".join(f"{endpoint} {n}" for endpoint, n in sorted(calls.items()))
