"""Scenarios 1 and 4: burst provisioning through the whole stack, run twice, and the memory of
the web and Celery workers after each run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bench.burst import BurstResult, delete_all, run_burst
from bench.client import Http
from bench.receiver import Receiver
from bench.report import Figure, Scenario, at_most, equal, info, percentile
from bench.stack import Stack, memory, say


def start_all(stack: Stack, *, single_worker: bool = False) -> None:
    """web, the workers as compose runs them (provision+default in 16 threads, monitor x2,
    webhooks in 8 threads) — or, as an experiment, one worker for every queue — and beat."""
    workers: list[tuple[str, Callable[[], None]]] = [
        (
            "worker",
            lambda: stack.start_worker("worker", "default,provision", 16, pool="threads"),
        ),
        ("worker-events", lambda: stack.start_worker("worker-events", "monitor", 2)),
        (
            "worker-webhooks",
            lambda: stack.start_worker("worker-webhooks", "webhooks", 8, pool="threads"),
        ),
    ]
    if single_worker:
        workers = [("worker", stack.start_worker)]
    for name, start in [("web", stack.start_web), *workers, ("beat", stack.start_beat)]:
        if name not in stack.procs:
            say(f"  starting {name}")
            start()


def run(
    stack: Stack, *, count: int, profile: bool = False, single_worker: bool = False
) -> list[Scenario]:
    from django.conf import settings

    say("== scenario 1: burst provisioning (and 4: memory)")
    start_all(stack, single_worker=single_worker)
    api_key, secret = stack.tenant()
    say("  catalog sync (a deployed novitai has its catalog)")
    stack.manage("catalog_sync")
    receiver = Receiver(secret).start()
    api = Http(stack.web_url, {"Authorization": f"Bearer {api_key}"})
    sandbox = Http(stack.sandbox_url)
    ceiling = float(settings.NOVITA_RATE_LIMIT_PER_SECOND)
    interval = float(settings.MONITOR_INTERVAL_SECONDS)
    runs: list[BurstResult] = []
    profiles: dict[str, Any] = {}
    memories: list[dict[str, Any]] = []
    cleanup: dict[str, Any] = {}
    try:
        for number in (1, 2):
            stack.check_alive()
            say(f"  run {number}: {count} instances at once")
            profiler = _profile_worker(stack, profiles) if profile and number == 2 else None
            result = run_burst(
                label=f"burst{number}", count=count, api=api, sandbox=sandbox, receiver=receiver
            )
            if profiler is not None:
                profiler.join()
            runs.append(result)
            memories.append(memory(stack))
            say(
                f"  run {number}: {result.ready}/{count} ready in {result.wall_seconds or 0:.1f} s,"
                f" lag p95 {result.lag(95)} s, {result.calls_per_ready} Novita calls per ready"
            )
            if number == 1:
                say(f"  deleting run 1's {len(result.created)} instances before run 2")
                cleanup = delete_all(ids=result.created, api=api, receiver=receiver)
    finally:
        receiver.stop()

    layout = (
        "1 worker, every queue, concurrency 4 (experiment)"
        if single_worker
        else "3 workers: provision+default 16 threads, monitor x2, webhooks 8 threads (as compose)"
    )
    burst = Scenario("1-burst", f"1. burst provisioning: {count} instances at once")
    burst.add(info("Celery workers", layout))
    burst.add(
        info("Novita request-rate ceiling (as shipped)", ceiling, "req/s"),
        info("monitoring interval (as shipped)", interval, "s"),
    )
    for number, result in enumerate(runs, 1):
        p = f"run {number}: "
        burst.add(
            equal(p + "ready", result.ready, count),
            info(p + "wall time to the last instance.ready", _r(result.wall_seconds), "s"),
            at_most(p + "notification lag p95", result.lag(95), interval + 1, "s"),
            info(p + "notification lag p50", result.lag(50), "s"),
            info(p + "notification lag max", _r(max(result.lags, default=None)), "s"),
            info(p + "  of which detection p50 / p95", _pair(result.detections), note=DETECTION),
            info(p + "  of which delivery p50 / p95", _pair(result.deliveries), note=DELIVERY),
            info(
                p + "    delivery p95 while creating / after",
                _p95(result.deliveries_while_creating, result.deliveries_after_creating),
                note=f"creates sent for {result.creates_seconds or 0:.1f} s",
            ),
            info(p + "monitoring pass interval p50 / max", _pair(result.pass_intervals(), 100)),
            at_most(p + "Novita calls per ready instance", result.calls_per_ready, 1.2),
            *(
                info(f"{p}  of which {endpoint}", per_ready)
                for endpoint, per_ready in result.calls_per_ready_by_endpoint().items()
            ),
            equal(p + "duplicate webhooks", result.duplicate_webhooks, 0),
            equal(p + "duplicate GPUs", result.duplicate_gpus, 0),
            equal(p + "failures", result.failures, 0),
            equal(p + "bad signatures", result.invalid_signatures, 0),
        )
    burst.details = {
        "workers": layout,
        "novita_rate_limit_per_second": ceiling,
        "monitor_interval_seconds": interval,
        "sandbox": "5 s from create to running (toCreate 1, creating 1, pulling 3), app boot 2 s",
        "runs": [r.as_json() for r in runs],
        "cleanup_between_runs": cleanup,
        "worker_profile_run_2": profiles or None,
    }
    mem = Scenario("4-memory", "4. memory after each burst of scenario 1 (PSS, RSS; MiB)")
    if len(memories) == 2:
        mem.add(*_memory_figures(memories))
    mem.details = {"after_run": memories}
    return [burst, mem]


def _profile_worker(stack: Stack, into: dict[str, Any]) -> threading.Thread:
    """What the Celery worker's pool processes do during a burst (py-spy dump census)."""
    from bench.profiling import py_spy_census

    def record() -> None:
        into.update(py_spy_census(stack.children("worker"), seconds=25, name="worker-burst"))

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    return thread


DETECTION = "the app answering -> novitai marks the instance ready (the body's ready_at)"
DELIVERY = "ready_at -> the webhook received"


def _pair(values: list[float], q: float = 95) -> str:
    a, b = percentile(values, 50), percentile(values, q)
    return "-" if a is None or b is None else f"{a:.2f} / {b:.2f} s"


def _p95(*series: list[float]) -> str:
    values = [percentile(values, 95) for values in series]
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values) + " s"


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _memory_figures(memories: list[dict[str, Any]]) -> list[Figure]:
    first, second = memories
    figures: list[Figure] = []
    for number, snapshot in enumerate(memories, 1):
        groups = {name: group["all_pss_sum_mib"] for name, group in snapshot.items()}
        total = round(sum(groups.values()), 1)
        note = ", ".join(f"{name} {pss:g}" for name, pss in sorted(groups.items()))
        figures.append(
            at_most(f"PSS of every novitai process, run {number}", total, 300, "MiB", note)
        )
    labels = (
        ("web", "web workers"),
        ("worker", "Celery worker processes (provision)"),
        ("worker-events", "Celery worker processes (monitor)"),
        ("worker-webhooks", "Celery worker processes (webhooks, threads)"),
    )
    for name, label in labels:
        if name not in first or name not in second:
            continue
        a, b = first[name], second[name]
        figures.append(info(f"{label}: peak RSS of one, run 1", a["workers_peak_max_mib"], "MiB"))
        figures.append(info(f"{label}: peak RSS of one, run 2", b["workers_peak_max_mib"], "MiB"))
        figures.append(info(f"{label}: RSS in all, run 1", a["workers_rss_sum_mib"], "MiB"))
        growth = round(b["workers_rss_sum_mib"] - a["workers_rss_sum_mib"], 1)
        limit = round(0.1 * a["workers_rss_sum_mib"], 1)
        figures.append(
            at_most(f"{label}: RSS growth run 1 -> run 2", growth, limit, "MiB", "target: < 10 %")
        )
    return figures
