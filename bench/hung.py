"""Scenario 9: hung creates block nothing. From a quiet state, the stack as compose runs it:
N instances at once with nothing wrong (the fault-free figure), deleted; then N again while Novita
hangs on a fifth of the creates for 45 s (longer than NOVITA_CREATE_TIMEOUT, 30 s) and then
closes the connection unanswered (the sandbox's fail_next rule with hang_s and drop: the create
never happened, and novitai creates it again once its lookup by name finds nothing).

The figure: the median create -> instance.ready of the other creates, against the fault-free
median (target: within 1.20). The hung creates take 30 s of their own before anything else can
happen to them, so they are the slowest: the other creates are the fastest N - hung.
"""

from __future__ import annotations

from typing import Any

from bench.burst import BurstResult, delete_all, run_burst
from bench.client import Http
from bench.provisioning import start_all
from bench.receiver import Receiver
from bench.report import Scenario, at_most, equal, info, percentile, rounded
from bench.spot import _quiet
from bench.stack import Stack, say

HANG_SECONDS = 45.0
CREATE = "/gpu/instance/create"


def run(stack: Stack, *, count: int) -> Scenario:
    from novita_sandbox.control import SandboxControl

    hung = max(1, count // 5)
    say(f"== scenario 9: {count} creates, {hung} of them hanging {HANG_SECONDS:g} s")
    _quiet(stack)
    start_all(stack)
    api_key, secret = stack.tenant()
    say("  catalog sync")
    stack.manage("catalog_sync")
    receiver = Receiver(secret).start()
    api = Http(stack.web_url, {"Authorization": f"Bearer {api_key}"})
    sandbox = Http(stack.sandbox_url)
    control = SandboxControl(stack.sandbox_url)
    try:
        say(f"  fault-free: {count} instances at once")
        clean = run_burst(label="nohang", count=count, api=api, sandbox=sandbox, receiver=receiver)
        delete_all(ids=clean.created, api=api, receiver=receiver)
        rule = {"path": CREATE, "count": hung, "status": 504, "drop": True, "hang_s": HANG_SECONDS}
        control.set_faults(fail_next=[rule])
        say(f"  {count} instances at once, the first {hung} creates hanging")
        faulty = run_burst(
            label="hung", count=count, api=api, sandbox=sandbox, receiver=receiver, timeout=300
        )
        control.set_faults(fail_next=[])
        delete_all(ids=faulty.created, api=api, receiver=receiver)
    finally:
        receiver.stop()
    return _scenario(clean, faulty, count=count, hung=hung)


def _scenario(clean: BurstResult, faulty: BurstResult, *, count: int, hung: int) -> Scenario:
    base = percentile(clean.to_ready, 50)
    ordered = sorted(faulty.to_ready)
    rest, slowest = ordered[: len(ordered) - hung], ordered[len(ordered) - hung :]
    median = percentile(rest, 50)
    ratio = None if base is None or median is None else rounded(median / base, 3)
    scenario = Scenario("9-hung-creates", f"9. {count} creates, {hung} hanging {HANG_SECONDS:g} s")
    scenario.add(
        equal("fault-free: ready", clean.ready, count),
        info("fault-free: create -> ready p50", rounded(base), "s"),
        equal("with hangs: ready", faulty.ready, count),
        info(
            "with hangs: create -> ready p50 of the others",
            rounded(median),
            "s",
            note=f"the fastest {len(rest)}",
        ),
        at_most("the others' p50 / fault-free p50", ratio, 1.20),
        info("the hung ones: create -> ready p50", rounded(percentile(slowest, 50)), "s"),
        equal("duplicate GPUs", clean.duplicate_gpus + faulty.duplicate_gpus, 0),
    )
    details: dict[str, Any] = {
        "hang_seconds": HANG_SECONDS,
        "hung": hung,
        "fault_free": clean.as_json(),
        "with_hangs": faulty.as_json(),
    }
    scenario.details = details
    return scenario
