"""The seven scenarios of issue 10. Each causes its fault against the whole stack, keeps using
the API through it as a client would, then waits (bounded) for the system to quiesce and has
the oracle judge it; its figures go beside their targets (bench/report.py).

    a  kills            a SIGKILL storm on the Celery workers during a burst of creates
    b  redis            Redis killed and restarted empty, creates queued, deliveries pending
    c  postgres         Postgres stopped and started during creates
    d  beat             a second beat for a minute: Novita calls per minute, one beat vs two
    e  slow-receiver    one tenant's webhook receiver drip-feeds; another tenant stops an instance
    f  hanging-creates  Novita hangs on creates (with and without their effect)
    g  monitor-kill     the process running a monitoring pass SIGKILLed mid-pass
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.report import Figure, Scenario, at_most, equal, info, percentile, rounded
from bench.stack import BIN, say
from chaos.harness import Harness
from chaos.observe import (
    Phases,
    Settled,
    calls_by_endpoint,
    create_to_ready,
    list_calls,
    settle,
    wait_for,
)
from chaos.oracle import DB_OUTAGE, Verdict
from chaos.receiver import ChaosReceiver
from chaos.traffic import Api, Load


@dataclass
class Context:
    harness: Harness
    interval: float  # MONITOR_INTERVAL_SECONDS, as shipped
    settle_timeout: float

    def api(self, tenant: str) -> Api:
        return Api(self.harness.stack.web_url, self.harness.tenants[tenant][0], label=tenant)

    def receiver(self, tenant: str, **behaviour: Any) -> ChaosReceiver:
        receiver = ChaosReceiver(self.harness.tenants[tenant][1], **behaviour)
        receiver.start()
        return receiver


# --- shared steps ---------------------------------------------------------------------------


def wait_statuses(api: Api, ids: list[str], status: str, *, timeout: float) -> float | None:
    """Seconds until every one of `ids` has `status` (None: not within `timeout`)."""
    started = time.time()
    wanted = set(ids)
    done = wait_for(
        lambda: all(api.statuses().get(i) == status for i in wanted), timeout=timeout, interval=1
    )
    return round(time.time() - started, 2) if done else None


def conclude(
    scenario: Scenario,
    ctx: Context,
    apis: list[Api],
    receivers: list[ChaosReceiver],
    phases: Phases,
    *,
    fault_over: float,
) -> Settled:
    """Waits for quiescence, adds the oracle's figures and the recovery time."""
    say(f"  waiting for quiescence (at most {ctx.settle_timeout:.0f} s)")
    settled = settle(ctx.harness, apis, receivers, phases, timeout=ctx.settle_timeout)
    verdict = settled.verdict
    recovery = None if settled.at is None else max(0.0, settled.at - fault_over)
    scenario.add(
        Figure(
            "recovery: fault over -> state converged",
            rounded(recovery, 1),
            "s",
            f"<= {ctx.settle_timeout:g} s",
            recovery is not None,
        )
    )
    scenario.add(*invariant_figures(verdict))
    scenario.add(
        Figure(
            "Celery processes that exited by themselves",
            ", ".join(ctx.harness.crashes) or "none",
            target="none",
            met=not ctx.harness.crashes,
            note="each started again at once, as a supervisor would",
        )
    )
    seconds = create_to_ready([i for api in apis for i in api.accepted])
    if seconds:
        scenario.add(
            info(
                "accepted create -> ready: median / max",
                f"{percentile(seconds, 50):.1f} / {seconds[-1]:.1f} s",
            )
        )
    scenario.details["verdict"] = verdict.as_json()
    scenario.details["phases"] = [
        {"name": n, "start": round(s, 3), "end": round(e, 3)} for n, s, e in phases
    ]
    for line in verdict.violations():
        say(f"  VIOLATION: {line}")
    return settled


def invariant_figures(v: Verdict) -> list[Figure]:
    return [
        Figure(
            "accepted creates at their expected end",
            f"{v.at_end} of {v.accepted}",
            target=f"all {v.accepted}",
            met=not v.not_at_end,
            note=", ".join(f"{k}: {s}" for k, s in list(v.not_at_end.items())[:5]),
        ),
        equal("rows holding two live upstream instances", len(v.duplicate_gpus), 0),
        equal("live upstream instances without a live row", len(v.orphans), 0),
        equal("notifiable events without a delivery", sum(v.events_without_delivery.values()), 0),
        Figure(
            "deliveries received",
            f"{v.deliveries - len(v.missing_deliveries)} of {v.deliveries}",
            target=f"all {v.deliveries}",
            met=not v.missing_deliveries,
        ),
        info("deliveries received twice (same webhook-id)", len(v.received_twice)),
        equal(
            "deliveries POSTed again while their first attempt ran", len(v.concurrent_resends), 0
        ),
        equal(
            "webhooks no row sent, bad signatures", len(v.unknown_received) + v.bad_signatures, 0
        ),
        equal("API 5xx outside what a database outage allows", v.forbidden_errors, 0),
        info("API 5xx by status and phase", _counts(v.server_errors)),
        equal("API requests without an answer", v.unanswered, 0),
    ]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in counts.items()) or "none"


def during(api: Api, start: float, end: float, kind: str | None = None) -> list[Any]:
    return [
        r
        for r in api.responses
        if r.sent >= start and r.sent < end and (kind is None or r.kind == kind)
    ]


# --- a: worker SIGKILL storm -----------------------------------------------------------------


def kills(ctx: Context, *, creates: int = 20, kills: int = 12, every: float = 1.0) -> Scenario:
    """`creates` creates spread over the storm while the Celery workers of the Procfile are
    SIGKILLed in turn every `every` seconds, `kills` times: twice one pool process (its master
    forks another; the task it ran is redelivered), every third time a whole worker, each in
    turn (master and pool: what it had reserved stays unacknowledged in the broker), started
    again at once as a supervisor would. A worker without pool processes (a threads pool) is
    killed whole."""
    h = ctx.harness
    scenario = Scenario("chaos-a-kills", f"a. worker SIGKILL storm during {creates} creates")
    say(f"== {scenario.title}")
    api, receiver = ctx.api("alpha"), ctx.receiver("alpha")
    try:
        storm_start = time.time()
        load = Load(
            api,
            receiver.url,
            creates_per_second=creates / (kills * every),
            reads_per_second=2.0,
            seconds=3 * kills * every,
            max_creates=creates,
        ).start()
        done: list[str] = []
        for number in range(kills):
            time.sleep(every)
            whole = number % 3 == 2  # each worker in turn, so that every one is killed whole
            name = h.workers[(number // 3 if whole else number) % len(h.workers)]
            pid = None if whole else h.kill_pool_child(name)
            if pid is None:  # every third kill, or a worker without pool processes (threads)
                h.kill_worker(name)
                h.restart(name)
                done.append(f"{name} (whole worker)")
            else:
                done.append(f"{name} pool process {pid}")
        wait_for(lambda: load.created >= creates, timeout=30)
        load.stop()
        storm_end = time.time()
        say(f"  {len(done)} kills in {storm_end - storm_start:.1f} s; {len(api.accepted)} accepted")
        phases = [("storm", storm_start, storm_end), ("after", storm_end, float("inf"))]
        conclude(scenario, ctx, [api], [receiver], phases, fault_over=storm_end)
        scenario.add(
            info("kills", f"{len(done)}: {sum('whole' in d for d in done)} whole workers"),
            equal("creates accepted (202)", len(api.accepted), creates),
        )
        scenario.details["kills"] = done
    finally:
        receiver.stop()
    return scenario


# --- b: Redis killed and restarted empty -------------------------------------------------------


def redis(ctx: Context, *, outage: float = 12.0) -> Scenario:
    """Four instances become ready while their receiver answers slowly (2 s: deliveries
    pending), the worker consuming `provision` is killed and five creates queue up for it in
    Redis; then Redis is SIGKILLed and, `outage` seconds later, started again empty (every
    queued message lost). Throughout the outage a client keeps reading and creating."""
    h = ctx.harness
    scenario = Scenario("chaos-b-redis", "b. Redis killed and restarted empty")
    say(f"== {scenario.title}")
    api, receiver = ctx.api("alpha"), ctx.receiver("alpha", delay=2.0)
    try:
        early = [api.create(receiver.url) for _ in range(4)]
        wait_statuses(api, [i for i in early if i], "ready", timeout=40)
        provision = h.worker_of("provision")
        h.kill_worker(provision)
        for _ in range(5):
            api.create(receiver.url)
        queued = int(h.redis.client().llen("provision"))
        pending = _pending_deliveries()
        say(f"  {queued} provision messages queued, {pending} deliveries pending: killing Redis")
        outage_start = time.time()
        h.redis.kill()
        load = Load(
            api, receiver.url, creates_per_second=1.0, reads_per_second=3.0, seconds=outage
        ).start()
        for thread in load.threads:
            thread.join()
        h.redis.start()
        outage_end = time.time()
        say(f"  Redis back after {outage_end - outage_start:.1f} s (empty)")
        h.restart(provision)
        phases = [
            ("before", 0.0, outage_start),
            ("redis_outage", outage_start, outage_end),
            ("after", outage_end, float("inf")),
        ]
        conclude(scenario, ctx, [api], [receiver], phases, fault_over=outage_end)
        answered = during(api, outage_start, outage_end)
        creates = [r for r in answered if r.kind == "create"]
        scenario.add(
            info(
                "provision messages queued / deliveries pending at the kill",
                f"{queued} / {pending}",
            ),
            equal(
                "API 5xx during the Redis outage",
                sum(1 for r in answered if r.status >= 500),
                0,
                note=f"of {len(answered)} requests",
            ),
            Figure(
                "creates answered 202 during the outage",
                f"{sum(r.status == 202 for r in creates)} of {len(creates)}",
                target=f"all {len(creates)}",
                met=bool(creates) and all(r.status == 202 for r in creates),
            ),
            Figure(
                "reads answered 200 during the outage",
                f"{sum(r.status == 200 for r in answered if r.kind != 'create')}"
                f" of {sum(r.kind != 'create' for r in answered)}",
                target="all",
                met=all(r.status == 200 for r in answered if r.kind != "create"),
            ),
        )
    finally:
        receiver.stop()
    return scenario


def _pending_deliveries() -> int:
    from django.db import connection

    from webhooks.models import DeliveryStatus, WebhookDelivery

    connection.close()
    return WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()


# --- c: Postgres stopped and started ---------------------------------------------------------


def postgres(
    ctx: Context, *, before: float = 8.0, outage: float = 10.0, after: float = 12.0
) -> Scenario:
    """A client creates (1/s) and reads (3/s) throughout; Postgres is stopped (`pg_ctl stop -m
    fast`: connections closed, new ones refused) `before` seconds in, and started again
    `outage` seconds later."""
    h = ctx.harness
    scenario = Scenario("chaos-c-postgres", "c. Postgres stopped and started during creates")
    say(f"== {scenario.title}")
    api, receiver = ctx.api("alpha"), ctx.receiver("alpha")
    try:
        start = time.time()
        load = Load(
            api,
            receiver.url,
            creates_per_second=1.0,
            reads_per_second=3.0,
            seconds=before + outage + after,
        ).start()
        time.sleep(before)
        outage_start = time.time()
        h.pg.stop()
        say("  Postgres stopped")
        time.sleep(outage)
        h.pg.start()
        outage_end = time.time()
        say(f"  Postgres back after {outage_end - outage_start:.1f} s")
        for thread in load.threads:
            thread.join()
        end = time.time()
        phases = [
            ("before", start, outage_start),
            (DB_OUTAGE, outage_start, outage_end),
            ("after", outage_end, float("inf")),
        ]
        conclude(scenario, ctx, [api], [receiver], phases, fault_over=outage_end)
        inside = during(api, outage_start, outage_end)
        first_ok = min(
            (
                r.answered
                for r in api.responses
                if r.sent >= outage_end and r.status < 500 and r.status
            ),
            default=None,
        )
        scenario.add(
            info(
                "answers during the outage",
                _counts(_by_status(inside)),
                note="503 service_unavailable with Retry-After is what is allowed",
            ),
            info(
                "API answering again after Postgres is back",
                rounded(None if first_ok is None else first_ok - outage_end),
                "s",
            ),
            info(
                "creates accepted before / during / after",
                "{} / {} / {}".format(
                    *(
                        sum(r.status == 202 for r in during(api, a, b, "create"))
                        for a, b in (
                            (start, outage_start),
                            (outage_start, outage_end),
                            (outage_end, end),
                        )
                    )
                ),
            ),
        )
    finally:
        receiver.stop()
    return scenario


def _by_status(responses: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in responses:
        key = (
            str(r.status)
            + (f" {r.code}" if r.code else "")
            + (" +Retry-After" if r.retry_after else "")
        )
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


# --- d: a second beat ------------------------------------------------------------------------


def beat(ctx: Context, *, baseline: float = 40.0, doubled: float = 60.0) -> Scenario:
    """Three ready instances watched; Novita calls counted for `baseline` seconds with the one
    beat, then for `doubled` seconds with a second beat started as the Procfile ships it, on
    "another machine" (its own schedule file)."""
    h = ctx.harness
    scenario = Scenario("chaos-d-beat", "d. a second beat")
    say(f"== {scenario.title}")
    api, receiver = ctx.api("alpha"), ctx.receiver("alpha")
    try:
        ids = [i for i in (api.create(receiver.url) for _ in range(3)) if i]
        wait_statuses(api, ids, "ready", timeout=40)
        time.sleep(ctx.interval)
        t1 = time.time()
        say(f"  one beat for {baseline:.0f} s")
        time.sleep(baseline)
        t2 = time.time()
        say(f"  a second beat for {doubled:.0f} s")
        h.start_beat(h.beats[0], as_name="beat-2", var_dir=str(h.root / "var-beat-2"))
        time.sleep(doubled - 1.0)  # start_beat waited 1 s
        t3 = time.time()
        h.stack.stop("beat-2")
        one, two = calls_by_endpoint(h, t1, t2), calls_by_endpoint(h, t2, t3)
        per_minute_one = sum(one.values()) * 60.0 / (t2 - t1)
        per_minute_two = sum(two.values()) * 60.0 / (t3 - t2)
        lists_one = one.get("GET /gpu/instances", 0) * 60.0 / (t2 - t1)
        lists_two = two.get("GET /gpu/instances", 0) * 60.0 / (t3 - t2)
        ratio = per_minute_two / per_minute_one if per_minute_one else None
        phases = [("one beat", t1, t2), ("two beats", t2, t3), ("after", t3, float("inf"))]
        conclude(scenario, ctx, [api], [receiver], phases, fault_over=t3)
        scenario.add(
            info(
                "Novita calls per minute, one beat", rounded(per_minute_one, 1), note=_counts(one)
            ),
            info(
                "Novita calls per minute, two beats", rounded(per_minute_two, 1), note=_counts(two)
            ),
            info(
                "listings per minute, one beat / two beats",
                f"{lists_one:.1f} / {lists_two:.1f}",
            ),
            at_most("calls per minute, two beats / one", rounded(ratio, 3), 1.10),
        )
        scenario.details["calls"] = {"one_beat": one, "two_beats": two}
        scenario.details["windows_seconds"] = [round(t2 - t1, 1), round(t3 - t2, 1)]
    finally:
        receiver.stop()
    return scenario


# --- e: a drip-feeding webhook receiver --------------------------------------------------------


def slow_receiver(  # noqa: PLR0915 - the scenario's steps and figures in the order they happen
    ctx: Context, *, drips: tuple[float, float] = (30.0, 75.0)
) -> Scenario:
    """Tenant beta has a ready instance and a healthy receiver; tenant alpha creates two whose
    receiver drip-feeds its answers (one byte a second: the first answer takes `drips[0]`
    seconds, the second `drips[1]`, any later one 15 s). While they are being fed, beta stops
    its instance: its stop must complete within a couple of monitoring intervals, no delivery
    may be POSTed again while its first attempt runs, and /health/ready, probed every 2 s,
    must say so if the queue is stalled. Then a queue that is stalled for sure: the worker
    consuming `webhooks` is killed while beta starts its instance again, and /health/ready must
    report it within HEALTH_QUEUE_MAX_AGE_SECONDS + 15 s."""
    h = ctx.harness
    scenario = Scenario("chaos-e-slow-receiver", "e. one tenant's drip-feeding webhook receiver")
    say(f"== {scenario.title}")
    alpha, beta = ctx.api("alpha"), ctx.api("beta")
    healthy = ctx.receiver("beta")
    drip = ctx.receiver("alpha", drips=list(drips), drip_default=15.0)
    probes: list[tuple[float, int, str, list[str]]] = []
    stop_probing = threading.Event()
    try:
        b_id = beta.create(healthy.url)
        if b_id is None:
            raise RuntimeError("beta's create was not accepted")
        wait_statuses(beta, [b_id], "ready", timeout=40)
        wait_for(lambda: healthy.of("instance.ready"), timeout=20)
        for _ in range(2):
            alpha.create(drip.url)
        # Both at once if the processes delivering webhooks can take two; one at least.
        if not wait_for(lambda: drip.open >= 1, timeout=40):
            raise RuntimeError("no delivery reached the drip-feeding receiver within 40 s")
        wait_for(lambda: drip.open >= 2, timeout=5)
        drip_start = time.time()
        say(f"  {drip.open} deliveries being drip-fed: beta stops its instance")

        def probe() -> None:
            while not stop_probing.wait(2.0):
                status, body = alpha.ready_probe()
                checks = body.get("checks", {}) if isinstance(body, dict) else {}
                bad = sorted(n for n, c in checks.items() if c.get("status") != "ok")
                overall = body.get("status", "") if isinstance(body, dict) else ""
                probes.append((time.time(), status, str(overall), bad))

        prober = threading.Thread(target=probe)
        prober.start()
        stop_sent = time.time()
        stop_status = beta.stop(b_id)
        beta.expect(b_id, "stopped")
        stopped = wait_for(lambda: beta.status_of(b_id) == "stopped", timeout=90, interval=0.25)
        stop_seconds = round(time.time() - stop_sent, 2) if stopped else None
        say(f"  beta's stop: answered {stop_status}, stopped after {stop_seconds} s")
        wait_for(
            lambda: drip.open == 0 and time.time() > drip_start + drips[1] + 1,
            timeout=drips[1] + 30,
        )
        drip_end = time.time()
        stop_probing.set()
        prober.join()
        notified = healthy.of("instance.stopped")
        passes = list_calls(h, drip_start, drip_end)
        gaps = [b - a for a, b in zip([drip_start, *passes], [*passes, drip_end], strict=False)]
        target = 2 * ctx.interval + 2.0
        notified_after = notified[0].at - stop_sent if notified else None
        # Stalled: monitoring (the stop late) or beta's deliveries (its webhook later than the
        # stop's target plus one bounded attempt of another delivery ahead of it).
        webhook_target = target + _setting("WEBHOOK_TIMEOUT_SECONDS")
        stalled = (
            stop_seconds is None
            or stop_seconds > target
            or notified_after is None
            or notified_after > webhook_target
        )
        reported = [p for p in probes if p[2] != "ok"]
        stall = _stalled_queue(ctx, beta, b_id)
        phases = [
            ("drip", drip_start, drip_end),
            ("stalled webhooks queue", drip_end, stall["end"]),
            ("after", stall["end"], float("inf")),
        ]
        conclude(scenario, ctx, [alpha, beta], [healthy, drip], phases, fault_over=stall["end"])
        scenario.add(
            at_most(
                "beta's stop -> stopped",
                stop_seconds,
                target,
                "s",
                note="two monitoring intervals + 2 s (the stop call, the sandbox's stop)",
            ),
            info("beta's instance.stopped received after the stop", rounded(notified_after), "s"),
            info("longest gap between monitoring passes during the drip", rounded(max(gaps)), "s"),
            info("answers drip-fed (POSTs to alpha's receiver)", len(drip.arrivals)),
        )
        if stalled:
            scenario.add(
                Figure(
                    "/health/ready reports the stall while it lasts",
                    f"{len(reported)} of {len(probes)} probes not ok",
                    target=">= 1 not ok",
                    met=bool(reported),
                    note=_counts({f"{p[1]} {p[2]} {'+'.join(p[3])}": 1 for p in probes[:1]}),
                )
            )
        else:
            scenario.add(info("/health/ready probes not ok (no stall)", len(reported)))
        max_age = float(stall["max_age"])
        scenario.add(
            at_most(
                "webhooks queue not served -> /health/ready says so",
                stall["reported_after"],
                max_age + 15.0,
                "s",
                note=f"HEALTH_QUEUE_MAX_AGE_SECONDS {max_age:g} + 15 s; {stall['not_ok']}",
            )
        )
        scenario.details["stalled_queue"] = stall
        scenario.details["probes"] = [
            {"at": round(t, 2), "status": s, "overall": o, "not_ok": bad} for t, s, o, bad in probes
        ]
        scenario.details["drip_received"] = [
            {
                "webhook_id": r.webhook_id,
                "started": round(r.started, 2),
                "finished": None if r.finished is None else round(r.finished, 2),
            }
            for r in drip.received()
        ]
    finally:
        stop_probing.set()
        healthy.stop()
        drip.stop()
    return scenario


def _stalled_queue(ctx: Context, api: Api, instance_id: str) -> dict[str, Any]:
    """A webhooks queue nobody serves: the worker consuming it SIGKILLed, then the stopped
    instance started (its instance.ready becomes due and waits). /health/ready is probed every
    second until it says so (60 s at most); then the worker is started again."""
    h = ctx.harness
    hooks = h.worker_of("webhooks")
    say(f"  a stalled webhooks queue: {hooks} killed, beta's instance started")
    h.kill_worker(hooks)
    killed_at = time.time()
    api.start(instance_id)
    api.expect(instance_id, "ready")
    not_ok: list[str] = []

    def reported() -> bool:
        _, body = api.ready_probe()
        checks = body.get("checks", {}) if isinstance(body, dict) else {}
        not_ok[:] = sorted(n for n, c in checks.items() if c.get("status") != "ok")
        return bool(not_ok)

    seen = wait_for(reported, timeout=60, interval=1.0)
    reported_after = round(time.time() - killed_at, 1) if seen else None
    say(f"  /health/ready reported {not_ok or 'nothing'} after {reported_after} s")
    h.restart(hooks)
    return {
        "worker": hooks,
        "reported_after": reported_after,
        "not_ok": "+".join(not_ok) or "all ok",
        "max_age": _setting("HEALTH_QUEUE_MAX_AGE_SECONDS", 15.0),
        "end": time.time(),
    }


# --- f: hanging creates -----------------------------------------------------------------------


def hanging_creates(ctx: Context, *, creates: int = 6, hang: float = 8.0) -> Scenario:
    """Novita hangs `hang` seconds (longer than NOVITA_CREATE_TIMEOUT) on four creates, then
    closes the connection: the first two never happened, the next two did. `creates` creates
    are sent; each must end ready on exactly one GPU."""
    h = ctx.harness
    scenario = Scenario("chaos-f-hanging-creates", "f. hanging creates")
    say(f"== {scenario.title}")
    api, receiver = ctx.api("alpha"), ctx.receiver("alpha")
    create = "/gpu/instance/create"
    try:
        h.sandbox.set_faults(
            fail_next=[
                {"path": create, "count": 2, "status": 504, "drop": True, "hang_s": hang},
                {
                    "path": create,
                    "count": 2,
                    "status": 504,
                    "drop": True,
                    "hang_s": hang,
                    "after_effect": True,
                },
            ]
        )
        start = time.time()
        for _ in range(creates):
            api.create(receiver.url)
        consumed = wait_for(lambda: not h.sandbox.faults()["fail_next"], timeout=60)
        fault_over = time.time() + hang
        say(f"  the four hanging creates {'reached Novita' if consumed else 'did not all come'}")
        time.sleep(max(0.0, fault_over - time.time()))
        phases = [("hangs", start, fault_over), ("after", fault_over, float("inf"))]
        settled = conclude(scenario, ctx, [api], [receiver], phases, fault_over=fault_over)
        stats = h.sandbox.stats()
        by_name = stats["creates_by_name"]
        calls = sum(stats["calls"].get(f"POST {create}", {}).values())
        scenario.add(
            equal("hanging creates that reached Novita", 4 if consumed else "fewer", 4),
            info(
                "create calls to Novita / instances it created",
                f"{calls} / {sum(by_name.values())}",
                note="2 hung without effect (retried after the grace), 2 with (found by name)",
            ),
            info(
                "first create -> every invariant holds",
                rounded(None if settled.at is None else settled.at - start, 1),
                "s",
            ),
        )
        scenario.details["creates_by_name"] = by_name
    finally:
        h.sandbox.set_faults(fail_next=[])
        receiver.stop()
    return scenario


# --- g: a SIGKILLed monitoring pass -----------------------------------------------------------


def monitor_kill(ctx: Context, *, hang: float = 20.0) -> Scenario:
    """Three ready instances; the next listing of Novita's instances hangs (the sandbox holds
    it `hang` seconds), so that a monitoring pass is caught mid-pass: the pool process running
    it (found with py-spy) is SIGKILLed. The next pass must come within about two intervals,
    and a stop requested just after the kill must complete."""
    h = ctx.harness
    scenario = Scenario("chaos-g-monitor-kill", "g. a SIGKILLed monitoring pass")
    say(f"== {scenario.title}")
    api, receiver = ctx.api("alpha"), ctx.receiver("alpha")
    try:
        ids = [i for i in (api.create(receiver.url) for _ in range(3)) if i]
        wait_statuses(api, ids, "ready", timeout=40)
        wait_for(lambda: len(receiver.of("instance.ready")) >= len(ids), timeout=20)
        h.sandbox.set_faults(
            fail_next=[{"path": "/gpu/instances", "method": "GET", "status": 504, "hang_s": hang}]
        )
        if not wait_for(lambda: not h.sandbox.faults()["fail_next"], timeout=15, interval=0.1):
            raise RuntimeError("no monitoring pass listed Novita's instances within 15 s")
        found = _find_process(h, "instances/monitoring/")
        if found is None:
            raise RuntimeError("py-spy found no process in instances/monitoring/")
        name, pid = found
        killed_at = time.time()
        if pid == h.stack.procs[name].pid:  # the worker itself (a threads pool)
            h.kill_worker(name)
            h.restart(name)  # as a supervisor would (the next pass is timed from the kill)
        else:
            h.kill_pool_child(name, pid)
        say(f"  killed process {pid} of {name} mid-pass")
        api.stop(ids[0])
        api.expect(ids[0], "stopped")
        stop_sent = time.time()
        next_pass = wait_for(lambda: list_calls(h, killed_at), timeout=75, interval=0.2)
        gap = round(next_pass[0] - killed_at, 2) if next_pass else None
        stopped = wait_for(lambda: api.status_of(ids[0]) == "stopped", timeout=75, interval=0.5)
        stop_seconds = round(time.time() - stop_sent, 2) if stopped else None
        say(f"  next pass {gap} s after the kill; the stop completed after {stop_seconds} s")
        phases = [("after the kill", killed_at, float("inf"))]
        conclude(scenario, ctx, [api], [receiver], phases, fault_over=killed_at)
        scenario.add(
            info("process killed", f"{name} process {pid} (py-spy: in instances/monitoring/)"),
            at_most(
                "kill -> the next monitoring pass",
                gap,
                2 * ctx.interval + 1.0,
                "s",
                note="two intervals + 1 s",
            ),
            info("a stop sent just after the kill -> stopped", stop_seconds, "s"),
        )
    finally:
        h.sandbox.set_faults(fail_next=[])
        receiver.stop()
    return scenario


def _setting(name: str, default: float | None = None) -> float:
    """A setting of novitai (`default` where this version has none)."""
    from django.conf import settings

    return float(getattr(settings, name) if default is None else getattr(settings, name, default))


def _find_process(h: Harness, source: str) -> tuple[str, int] | None:
    """The Celery pool process with a frame in `source` (a file, or a folder ending in "/") on
    its stack (py-spy dump, which only reads the process)."""
    for name in h.workers:
        for pid in h.stack.tree(name):  # a threads pool runs its tasks in the worker itself
            done = subprocess.run(
                [str(BIN / "py-spy"), "dump", "--pid", str(pid)],
                capture_output=True,
                text=True,
                check=False,
                timeout=20,
            )
            if f"({source}" in done.stdout:
                return name, pid
    return None


SCENARIOS: dict[str, Callable[[Context], Scenario]] = {
    "kills": kills,
    "redis": redis,
    "postgres": postgres,
    "beat": beat,
    "slow-receiver": slow_receiver,
    "hanging-creates": hanging_creates,
    "monitor-kill": monitor_kill,
}
