"""Scenario 6: spot reclaim at scale. N spot instances (on_preempt reprovision) are created
through the API and followed to ready (scenario 1's burst, with these two fields added); then
Novita reclaims all of them at once (the sandbox's control API), and each is followed to its
second instance.ready webhook, from a new upstream instance (`<novita name>-r1`).

Measured from the outside, as scenario 1 measures: the receiver's clock for webhooks, the
sandbox's for its instances and calls; the instance's events (GET .../events/) for when novitai
marked it preempted and pending again. The stack is started from a quiet state: the worker and
beat are stopped, the tables provisioning writes emptied, the broker flushed and the sandbox
reset (whatever an earlier scenario left), then started again as compose runs them.

    reclaim ─ detection ─> preempted ─ wait ─> pending ─ re-provisioning ─> ready ─ delivery ─>
                           (a pass sees    (reclaim      (create under the      instance.ready
                           reclaiming or   over: exited)  rate ceiling, 5+2 s   received
                           terminated)                    boot, a pass sees it)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.burst import run_burst, summary, upstream_name
from bench.client import Http, calls_between, in_parallel
from bench.db import clear_instances
from bench.provisioning import start_all
from bench.receiver import Arrival, Receiver
from bench.report import Scenario, at_most, equal, info, percentile, rounded
from bench.stack import SANDBOX_APP_BOOT, Stack, flush_broker, say

FIELDS = {"billing_mode": "spot", "on_preempt": "reprovision"}
# The sandbox as the bench starts it: 5 s from create to running (toCreate 1, creating 1,
# pulling 3), the app 2 s later; a reclaim is notified -> reclaiming 0.2 s -> terminated 0.2 s.
SANDBOX_BOOT = 5.0 + SANDBOX_APP_BOOT
LOGGED = ("web", "worker", "worker-events", "worker-webhooks", "beat")


def run(stack: Stack, *, count: int, timeout: float = 180.0) -> Scenario:
    from django.conf import settings

    say(f"== scenario 6: spot reclaim at scale ({count} spot instances, on_preempt reprovision)")
    _quiet(stack)
    start_all(stack)
    api_key, secret = stack.tenant()
    say("  catalog sync")
    stack.manage("catalog_sync")
    logs_from = {name: _size(stack, name) for name in LOGGED}
    receiver = Receiver(secret).start()
    api = Http(stack.web_url, {"Authorization": f"Bearer {api_key}"})
    sandbox = Http(stack.sandbox_url)
    interval = float(settings.MONITOR_INTERVAL_SECONDS)
    ceiling = float(settings.NOVITA_RATE_LIMIT_PER_SECOND)
    try:
        say(f"  {count} spot instances through the API, followed to ready")
        setup = run_burst(
            label="spot", count=count, api=api, sandbox=sandbox, receiver=receiver, fields=FIELDS
        )
        say(f"  {setup.ready}/{count} ready in {setup.wall_seconds or 0:.1f} s")
        stack.check_alive()
        recovery = _reclaim_and_follow(
            stack, setup.created, api=api, sandbox=sandbox, receiver=receiver, timeout=timeout
        )
        recovery["setup"] = {
            "ready": setup.ready,
            "failures": setup.failures,
            "wall_seconds": rounded(setup.wall_seconds),
            "novita_calls_per_ready": setup.calls_per_ready,
        }
    finally:
        receiver.stop()
    recovery["log_problems"] = _log_problems(stack, logs_from)
    return _scenario(recovery, count=count, interval=interval, ceiling=ceiling)


def _quiet(stack: Stack) -> None:
    """No worker, beat, row, queued task or upstream instance left by an earlier scenario."""
    running = [
        name
        for name in ("beat", "worker-events", "worker-webhooks", "worker")
        if name in stack.procs
    ]
    if running:
        say(f"  stopping {', '.join(running)} to start from a quiet state")
        stack.stop(*running)
    clear_instances()
    flush_broker()
    if "sandbox" not in stack.procs:
        stack.start_sandbox()
    Http(stack.sandbox_url).post("/_sandbox/reset")


def _reclaim_and_follow(  # noqa: C901, PLR0912, PLR0915 - the scenario's script, step by step
    stack: Stack,
    ids: list[str],
    *,
    api: Http,
    sandbox: Http,
    receiver: Receiver,
    timeout: float,
) -> dict[str, Any]:
    from django.conf import settings

    from novita_sandbox.control import SandboxControl, SandboxControlError

    interval = float(settings.MONITOR_INTERVAL_SECONDS)
    wanted = set(ids)
    first_ready = _first(receiver.of("instance.ready", wanted))
    original = {i: a.novita_instance_id for i, a in first_ready.items() if a.novita_instance_id}
    control = SandboxControl(stack.sandbox_url)
    reclaimed_at: dict[str, float] = {}
    reclaim_errors: Counter[str] = Counter()

    def reclaim(instance_id: str) -> None:
        at = time.time()  # just before the call: the reclaim happens within it (loopback)
        try:
            control.reclaim(original[instance_id])
        except (SandboxControlError, OSError) as exc:
            reclaim_errors[type(exc).__name__] += 1
            return
        reclaimed_at[instance_id] = at

    stats_before = sandbox.get("/_sandbox/stats")
    t0 = time.time()
    in_parallel(sorted(original), reclaim, threads=16)
    reclaim_seconds = time.time() - t0
    say(
        f"  {len(reclaimed_at)}/{len(ids)} reclaimed at once in {reclaim_seconds:.2f} s; "
        "waiting for the replacements' instance.ready"
    )
    targets = set(reclaimed_at)

    def again() -> dict[str, Arrival]:
        """The first instance.ready of each reclaimed instance after its reclaim, from
        another upstream instance."""
        later = [
            a
            for a in receiver.of("instance.ready", targets)
            if a.at > reclaimed_at[a.instance_id]
            and a.novita_instance_id != original[a.instance_id]
        ]
        return _first(later)

    deadline, next_note = t0 + timeout, 0.0
    while True:
        ready = again()
        failed = {a.instance_id for a in receiver.of("instance.failed", targets)} - set(ready)
        now = time.time()
        if len(ready) + len(failed) >= len(targets) or now > deadline:
            break
        if now >= next_note:
            preempted = {a.instance_id for a in receiver.of("instance.preempted", targets)}
            say(
                f"    {now - t0:5.1f} s  preempted {len(preempted)}/{len(targets)}  "
                f"ready again {len(ready)}/{len(targets)}  failed {len(failed)}"
            )
            next_note = now + 5
        time.sleep(0.1)
    stats_recovered = sandbox.get("/_sandbox/stats")
    last_ready = max((a.at for a in ready.values()), default=time.time())

    # Settle: two more passes at least (a late duplicate create or a missed delete shows up),
    # until every original is removed and only the replacements live (30 s at most).
    bases = {i: upstream_name(i) for i in ids}
    settle_until = last_ready + 2 * interval
    while True:
        views = sandbox.get("/_sandbox/instances")["instances"]
        end = _end_state(views, bases, original)
        now = time.time()
        settled = not end["originals_not_removed"] and end["live"] == len(ready)
        if (settled and now >= settle_until) or now > last_ready + 30:
            break
        time.sleep(0.5)
    stats_end = sandbox.get("/_sandbox/stats")
    say(
        f"  {len(ready)}/{len(targets)} ready again, the last {last_ready - t0:.1f} s after the "
        f"reclaims; {end['live']} upstream instances live at the end"
    )

    # When novitai marked each instance preempted and pending again (its events).
    events = dict(
        zip(
            sorted(targets),
            in_parallel(
                sorted(targets),
                lambda i: api.get(f"/api/v1/instances/{i}/events/?page_size=100")["results"],
                threads=8,
            ),
            strict=True,
        )
    )
    upstream_by_name = {v["name"]: v for v in views}
    lags: list[float] = []
    detection: list[float] = []
    waiting: list[float] = []
    reprovision: list[float] = []
    to_create: list[float] = []
    boot: list[float] = []
    ready_detection: list[float] = []
    delivery: list[float] = []
    preempted_received: list[float] = []
    moved_region = 0
    for instance_id, arrival in ready.items():
        reclaim_at = reclaimed_at[instance_id]
        lags.append(arrival.at - reclaim_at)
        preempted_at = _event_at(events[instance_id], to_status="preempted", after=reclaim_at)
        pending = _event_at(
            events[instance_id], to_status="pending", reason="spot_recovery", after=reclaim_at
        )
        if preempted_at is not None:
            detection.append(preempted_at - reclaim_at)
            if pending is not None:
                waiting.append(pending - preempted_at)
        if pending is not None and arrival.ready_at is not None:
            reprovision.append(arrival.ready_at - pending)
        replacement = upstream_by_name.get(f"{bases[instance_id]}-r1")
        if replacement is not None:
            if pending is not None:
                to_create.append(float(replacement["created_at"]) - pending)
            app_ready = replacement.get("app_ready_at")
            if app_ready is not None:
                boot.append(float(app_ready) - float(replacement["created_at"]))
                if arrival.ready_at is not None:
                    ready_detection.append(arrival.ready_at - float(app_ready))
            first = upstream_by_name.get(bases[instance_id])
            if first is not None and first["clusterId"] != replacement["clusterId"]:
                moved_region += 1
        if arrival.ready_at is not None:
            delivery.append(arrival.at - arrival.ready_at)
    for arrival in _first(receiver.of("instance.preempted", targets)).values():
        preempted_received.append(arrival.at - reclaimed_at[arrival.instance_id])

    # Webhooks of these instances: ids delivered twice, instance.preempted per instance.
    with receiver.lock:
        arrivals = [a for a in receiver.arrivals if a.instance_id in wanted]
    by_webhook_id = Counter(a.webhook_id for a in arrivals)
    preempted_per = Counter(a.instance_id for a in arrivals if a.type == "instance.preempted")
    ready_per = Counter(a.instance_id for a in arrivals if a.type == "instance.ready")
    failed_ids = {a.instance_id for a in receiver.of("instance.failed", targets)} - set(ready)
    # Creates accepted per instance after the reclaim, under any of its names (<name>, -r1, ...).
    new_creates = Counter(
        {
            name: n - stats_before["creates_by_name"].get(name, 0)
            for name, n in stats_end["creates_by_name"].items()
        }
    )
    creates_per = {
        i: sum(n for name, n in new_creates.items() if name.startswith(bases[i])) for i in targets
    }
    calls = calls_between(stats_before, stats_recovered)
    # When each kind of call reached Novita (seconds after the first reclaim): first, last.
    spans: dict[str, list[float]] = {}
    for call in sandbox.get(f"/_sandbox/calls?since={t0}")["calls"]:
        if call["at"] <= last_ready:
            span = spans.setdefault(f"{call['method']} {call['path']}", [call["at"], call["at"]])
            span[0], span[1] = min(span[0], call["at"]), max(span[1], call["at"])
    recovered = len(ready)
    return {
        "requested": len(ids),
        "reclaimed": len(reclaimed_at),
        "reclaim_errors": dict(reclaim_errors),
        "reclaim_seconds": round(reclaim_seconds, 3),
        "recovered": recovered,
        "failed": len(failed_ids),
        "missing": len(targets) - recovered - len(failed_ids),
        "last_ready_after_reclaim_seconds": rounded(last_ready - t0),
        "lag_seconds": summary(lags),
        "detection_seconds": summary(detection),
        "preempted_to_pending_seconds": summary(waiting),
        "reprovision_seconds": summary(reprovision),
        "pending_to_create_seconds": summary(to_create),
        "create_to_app_ready_seconds": summary(boot),
        "app_ready_to_ready_seconds": summary(ready_detection),
        "delivery_seconds": summary(delivery),
        "reclaim_to_preempted_webhook_seconds": summary(preempted_received),
        "moved_region": moved_region,
        "novita_calls": calls,
        "novita_calls_settle": calls_between(stats_recovered, stats_end),
        "novita_calls_first_last_seconds": {
            k: [round(a - t0, 2), round(b - t0, 2)] for k, (a, b) in sorted(spans.items())
        },
        "novita_calls_per_recovery": _per(calls, recovered),
        "creates_per_instance": dict(Counter(creates_per.values())),
        "duplicate_gpus": sum(max(0, n - 1) for n in creates_per.values()),
        "end": end,
        "live_instances_sandbox": stats_end["live_instances"],
        "duplicate_webhooks": sum(n - 1 for n in by_webhook_id.values() if n > 1),
        "preempted_webhooks": sum(preempted_per.values()),
        "not_one_preempted": sum(1 for i in targets if preempted_per[i] != 1),
        "ready_webhooks_per_instance": dict(Counter(ready_per[i] for i in wanted)),
        "invalid_signatures": sum(1 for a in arrivals if not a.signature_valid),
        "_lags": lags,
        "_detection": detection,
        "_reprovision": reprovision,
    }


def _end_state(
    views: list[dict[str, Any]], bases: dict[str, str], original: dict[str, str]
) -> dict[str, Any]:
    """The sandbox's instances of this scenario at the end: which live (not removed), under
    which name; the reclaimed originals that are not removed."""
    ours = {base for base in bases.values()}
    live = [v for v in views if v["status"] != "removed" and _base(v["name"]) in ours]
    originals = set(original.values())
    return {
        "live": len(live),
        "live_not_r1": sorted(v["name"] for v in live if not v["name"].endswith("-r1")),
        "originals_not_removed": sorted(
            v["id"] for v in views if v["id"] in originals and v["status"] != "removed"
        ),
        "live_by_cluster": dict(Counter(v["clusterId"] for v in live)),
    }


def _base(name: str) -> str:
    head, sep, tail = name.rpartition("-r")
    return head if sep and tail.isdigit() else name


def _first(arrivals: list[Arrival]) -> dict[str, Arrival]:
    first: dict[str, Arrival] = {}
    for arrival in sorted(arrivals, key=lambda a: a.at):
        first.setdefault(arrival.instance_id, arrival)
    return first


def _event_at(
    events: list[dict[str, Any]], *, to_status: str, after: float, reason: str = ""
) -> float | None:
    for event in events:
        at = datetime.fromisoformat(event["at"]).timestamp()
        wanted = event["to_status"] == to_status and (not reason or event["reason"] == reason)
        if wanted and at >= after:
            return at
    return None


def _per(calls: dict[str, int], recovered: int) -> dict[str, float]:
    if not recovered:
        return {}
    return {k: round(v / recovered, 3) for k, v in calls.items()}


def _size(stack: Stack, name: str) -> int:
    proc = stack.procs.get(name)
    return proc.log_path.stat().st_size if proc is not None else 0


def _log_problems(stack: Stack, since: dict[str, int]) -> dict[str, Any]:
    """ERROR/CRITICAL lines (and tracebacks) the processes logged during the scenario, and how
    many warnings."""
    errors: list[str] = []
    warnings = 0
    for name in LOGGED:
        proc = stack.procs.get(name)
        if proc is None:
            continue
        with Path(proc.log_path).open("rb") as log:
            log.seek(since.get(name, 0))
            text = log.read().decode(errors="replace")
        for line in text.splitlines():
            level = ""
            try:
                level = str(json.loads(line).get("level", ""))
            except (ValueError, AttributeError):
                if "Traceback" in line or "ERROR" in line or "CRITICAL" in line:
                    level = "ERROR"
                elif "WARNING" in line:
                    level = "WARNING"
            if level in ("ERROR", "CRITICAL"):
                errors.append(f"{name}: {line[:400]}")
            elif level == "WARNING":
                warnings += 1
    return {"errors": len(errors), "warnings": warnings, "first_errors": errors[:10]}


def p95_target(count: int, interval: float, ceiling: float) -> float:
    """What a recovery needs at most, for the 95th of N reclaimed at once: a pass to see the
    reclaim (one interval); the recoveries' Novita calls, a create and a delete each (the
    reclaimed original), one after another under the request-rate ceiling (2N / ceiling: nothing
    sends the creates first); the sandbox's boot (5 s to running, the app 2 s later); a pass to
    see the replacement answering (one interval); a second for the passes' own work and the
    delivery. 24 s at N = 50 as shipped (3 s, 10 req/s)."""
    return round(interval + 2 * count / ceiling + SANDBOX_BOOT + interval + 1.0, 1)


def _scenario(r: dict[str, Any], *, count: int, interval: float, ceiling: float) -> Scenario:
    scenario = Scenario("6-spot", f"6. spot reclaim at scale: {count} instances reclaimed at once")
    recovered = r["recovered"]
    lags = r.pop("_lags")
    detection = r.pop("_detection")
    reprovision = r.pop("_reprovision")
    target = p95_target(count, interval, ceiling)
    per = r["novita_calls_per_recovery"]
    creates = sum(v for k, v in per.items() if k.endswith("/gpu/instance/create"))
    end = r["end"]
    logs = r["log_problems"]
    scenario.add(
        info("set-up: spot instances ready", f"{r['setup']['ready']} / {count}"),
        equal("recovered (ready again, on a new upstream instance)", recovered, count),
        equal(
            "failures",
            r["failed"] + r["missing"] + sum(r["reclaim_errors"].values()),
            0,
            note="instance.failed, not ready again within the deadline, reclaim refused",
        ),
        at_most(
            "reclaim -> replacement's instance.ready p95",
            rounded(percentile(lags, 95)),
            target,
            "s",
            note="an interval to see the reclaim, N creates and N deletes under the ceiling, "
            "7 s boot, an interval to see it ready, 1 s",
        ),
        info("reclaim -> replacement's instance.ready p50 / max", _pair(lags, 50, 100)),
        info("  of which detection p50 / p95", _pair(detection), note=DETECTION),
        info(
            "  preempted -> pending p50 / p95",
            _p(r["preempted_to_pending_seconds"]),
            note="waiting for the reclaim to finish upstream",
        ),
        info("  of which re-provisioning p50 / p95", _pair(reprovision), note=REPROVISION),
        info("    pending -> create at Novita p50 / p95", _p(r["pending_to_create_seconds"])),
        info("    create -> app answering p50 / p95", _p(r["create_to_app_ready_seconds"])),
        info("    app answering -> ready p50 / p95", _p(r["app_ready_to_ready_seconds"])),
        info("  delivery p50 / p95", _p(r["delivery_seconds"]), note="ready_at -> received"),
        info(
            "creates / deletes reached Novita, s after the reclaims",
            _spans(r["novita_calls_first_last_seconds"]),
            note="first-last; both share the request-rate ceiling",
        ),
        info(
            "reclaim -> instance.preempted received p50 / p95",
            _p(r["reclaim_to_preempted_webhook_seconds"]),
        ),
        info("replacements in another region", f"{r['moved_region']} / {recovered}"),
        equal("Novita creates per recovery", round(creates, 2), 1.0),
        at_most("Novita calls per recovery", round(sum(per.values()), 2) if per else None, 3),
        *(info(f"  of which {endpoint}", value) for endpoint, value in per.items()),
        equal("duplicate GPUs (more than one create per instance)", r["duplicate_gpus"], 0),
        equal("upstream instances live at the end", end["live"], count),
        equal("  of them not named <name>-r1", len(end["live_not_r1"]), 0),
        equal("reclaimed originals not removed (leaked)", len(end["originals_not_removed"]), 0),
        equal("duplicate webhooks (one webhook-id twice)", r["duplicate_webhooks"], 0),
        equal("instance.preempted webhooks", r["preempted_webhooks"], count),
        equal("  instances without exactly one", r["not_one_preempted"], 0),
        equal("bad signatures", r["invalid_signatures"], 0),
        equal("errors in the web, worker and beat logs", logs["errors"], 0),
    )
    scenario.details = {
        "instances": count,
        "fields": FIELDS,
        "monitor_interval_seconds": interval,
        "novita_rate_limit_per_second": ceiling,
        "sandbox": "5 s from create to running, app boot 2 s; a reclaim: notified -> reclaiming "
        "0.2 s -> terminated (exited) 0.2 s",
        "lag_p95_target_seconds": target,
        **r,
    }
    return scenario


DETECTION = "reclaim -> novitai marks it preempted (its event)"
REPROVISION = "pending (spot_recovery) -> ready_at"


def _pair(values: list[float], a: float = 50, b: float = 95) -> str:
    x, y = percentile(values, a), percentile(values, b)
    return "-" if x is None or y is None else f"{x:.2f} / {y:.2f} s"


def _spans(spans: dict[str, list[float]]) -> str:
    def span(suffix: str) -> str:
        found = [v for k, v in spans.items() if k.endswith(suffix)]
        return f"{found[0][0]:.1f}-{found[0][1]:.1f}" if found else "-"

    return f"{span('/gpu/instance/create')} / {span('/gpu/instance/delete')}"


def _p(values: dict[str, float | None]) -> str:
    a, b = values.get("p50"), values.get("p95")
    return "-" if a is None or b is None else f"{a:.2f} / {b:.2f} s"
