"""Scenario 2: monitoring at scale. N instances in transit at once (N = 100, 500, 2,000), each a
row of ours and an instance in the sandbox; monitoring passes are run in this process (Django set
up against the bench database, the real Novita client against the sandbox, the shipped request-
rate ceiling). Per pass: Novita calls (the sandbox's counters), health-check requests, database
queries (CaptureQueriesContext), wall time, and the time spent waiting for the rate ceiling.

Passes at each N, in order:

    first sight   every instance pulling; each row's upstream status is new to us
    steady        still pulling; nothing changed since the last pass
    running       every instance running and its app answering: starting -> health_checking ->
                  ready, 2 http health checks each (template 40117)
    steady ready  all ready; nothing changed

No worker or beat runs meanwhile (they would run passes too). The rows have no webhook URL.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from bench.client import PRODUCT, REGION, TEMPLATE, Http, calls_between, in_parallel
from bench.db import analyze, clear_instances
from bench.report import RESULTS, Figure, Scenario, info
from bench.stack import SANDBOX_KEY, Stack, say

PASSES = ("first sight", "steady", "running", "steady ready")
PRODUCT_ID = "4090.16c62g.sim"
CREATE: dict[str, Any] = {
    "productId": PRODUCT_ID,
    "gpuNum": 1,
    "rootfsSize": 60,
    "imageUrl": "ghcr.io/example/pytorch-lab:2.4",
    "ports": "8888/http,7860/http,22/tcp",
    "clusterId": "us-tx-2",
    "kind": "gpu",
    "billingMode": "onDemand",
}


@contextmanager
def rate_limit_waits() -> Iterator[list[float]]:
    """Seconds each call waited for a slot of the request-rate ceiling (RateLimiter.acquire
    returns them; it is wrapped here, not changed)."""
    from novitai.novita.ratelimit import RateLimiter

    waits: list[float] = []
    original = RateLimiter.acquire

    def acquire(self: RateLimiter, **kw: Any) -> float:
        waited = original(self, **kw)
        waits.append(waited)
        return waited

    RateLimiter.acquire = acquire  # type: ignore[method-assign]
    try:
        yield waits
    finally:
        RateLimiter.acquire = original  # type: ignore[method-assign]


@contextmanager
def every_query() -> Iterator[list[dict[str, str]]]:
    """The queries run inside, as CaptureQueriesContext captures them, without Django's
    9,000-query log limit (a pass can run more)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    kept = connection.queries_log
    connection.queries_log = deque()
    captured: list[dict[str, str]] = []
    try:
        with CaptureQueriesContext(connection) as queries:
            yield captured
        captured.extend(queries.captured_queries)
    finally:
        connection.queries_log = kept


def seed(n: int, sandbox: Http, api: Http) -> list[str]:
    """n sandbox instances (pulling) and n rows of ours in `starting` that own them."""
    from django.utils import timezone

    from instances.models import Instance, InstanceStatus
    from instances.services import novita_name_for
    from tenants.models import Tenant

    tenant = Tenant.objects.get(name="bench")
    ids = [uuid.uuid4() for _ in range(n)]

    def create(instance_id: uuid.UUID) -> str:
        body = {**CREATE, "name": novita_name_for(instance_id)}
        return str(api.post("/gpu/instance/create", body)["id"])

    novita_ids = in_parallel(ids, create, threads=8)
    now = timezone.now()
    Instance.objects.bulk_create(
        [
            Instance(
                id=instance_id,
                tenant=tenant,
                name=f"mon-{i:05d}",
                status=InstanceStatus.STARTING,
                template_id=TEMPLATE,
                product_names=[PRODUCT],
                rootfs_size=60,
                novita_name=novita_name_for(instance_id),
                novita_instance_id=novita_id,
                novita_product_id=PRODUCT_ID,
                product_name=PRODUCT,
                region=REGION,
                cluster_id="us-tx-2",
                provisioned_at=now,
                phase_deadline_at=now + timedelta(hours=1),
            )
            for i, (instance_id, novita_id) in enumerate(zip(ids, novita_ids, strict=True))
        ],
        batch_size=1000,
    )
    return novita_ids


def measure_pass(sandbox: Http, *, profile_to: str = "") -> dict[str, Any]:
    from django.core.cache import cache

    from instances.monitoring import monitor_pass
    from instances.monitoring.passes import LISTED_AT_KEY

    # A pass that lists: with nothing in transit the monitor lists only every
    # MONITOR_STEADY_INTERVAL_SECONDS, and that listing pass is the one measured.
    cache.delete(LISTED_AT_KEY)
    before = sandbox.get("/_sandbox/stats")
    profiler = None
    if profile_to:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    with rate_limit_waits() as waits, every_query() as queries:
        started = time.perf_counter()
        result = monitor_pass()
        seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        path = RESULTS / "profiles" / profile_to
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    after = sandbox.get("/_sandbox/stats")
    calls = calls_between(before, after)
    app_calls = sum(after["app_calls"].values()) - sum(before["app_calls"].values())
    kinds = Counter(q["sql"].split(None, 1)[0].upper() for q in queries)
    return {
        "seconds": round(seconds, 3),
        "rate_limit_wait_seconds": round(sum(waits), 3),
        "novita_calls": sum(calls.values()),
        "novita_calls_by_endpoint": calls,
        "health_check_requests": app_calls,
        "queries": len(queries),
        "queries_by_kind": dict(kinds.most_common()),
        "skipped": result.skipped,
        "upstream": result.upstream,
        "rows": result.rows,
        "transitions": result.transitions,
        "health_checked": result.health_checked,
    }


def run(stack: Stack, *, sizes: list[int], profile: bool = False) -> Scenario:
    from django.conf import settings

    say("== scenario 2: monitoring at scale (in-process passes)")
    if any(name in stack.procs for name in ("worker", "worker-events", "worker-webhooks", "beat")):
        raise RuntimeError("scenario 2 needs the worker and beat stopped")
    stack.tenant()
    sandbox = Http(stack.sandbox_url)
    novita_api = Http(
        f"{stack.sandbox_url}/gpu-instance/openapi/v1", {"Authorization": f"Bearer {SANDBOX_KEY}"}
    )
    page_size = int(settings.NOVITA_LIST_PAGE_SIZE)
    by_size: dict[int, dict[str, Any]] = {}
    for n in sizes:
        clear_instances()
        sandbox.post("/_sandbox/reset")
        # Long enough for the first two passes to see every instance still pulling.
        dwell = 4.0 + n * 0.006
        sandbox.post(
            "/_sandbox/timing",
            {"to_create": 0.1, "creating": 0.1, "pulling": dwell, "app_boot": 0.2},
        )
        started = time.time()
        seed(n, sandbox, novita_api)
        analyze()
        _wait_for(sandbox, "pulling", n)
        say(f"  N={n}: {n} instances pulling (seeded in {time.time() - started:.1f} s)")
        passes: dict[str, dict[str, Any]] = {}
        for name in PASSES:
            if name == "running":
                _wait_for(sandbox, "running", n)
                time.sleep(0.3)  # the app boots 0.2 s after running
            profile_to = (
                f"monitor-pass-{n}-{name.replace(' ', '-')}.txt"
                if profile and n == max(sizes)
                else ""
            )
            passes[name] = measure_pass(sandbox, profile_to=profile_to)
            p = passes[name]
            say(
                f"    {name:<13} {p['seconds']:6.2f} s  {p['novita_calls']:3d} Novita calls  "
                f"{p['queries']:5d} queries  {p['transitions']:5d} transitions  "
                f"(rate-ceiling wait {p['rate_limit_wait_seconds']:.2f} s)"
            )
        pages = -(-n // page_size)
        by_size[n] = {"pages": pages, "passes": passes}
        if passes["steady"]["transitions"]:
            say(f"    note: {passes['steady']['transitions']} transitions in the steady pass")
    clear_instances()
    sandbox.post("/_sandbox/reset")
    return _scenario(by_size, page_size)


def _wait_for(sandbox: Http, status: str, n: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sandbox.get("/_sandbox/stats")["instances_by_status"].get(status, 0) >= n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the sandbox's {n} instances were not {status} within {timeout:.0f}s")


def _scenario(by_size: dict[int, dict[str, Any]], page_size: int) -> Scenario:
    """Side by side: one row per pass and figure, the values at every N in one cell."""
    from django.conf import settings

    scenario = Scenario("2-monitoring", "2. monitoring at scale (one pass; values at each N)")
    sizes = sorted(by_size)

    def cell(values: list[Any]) -> str:
        return " / ".join(f"{v:,}" if isinstance(v, int) else f"{v:g}" for v in values)

    pages = [by_size[n]["pages"] for n in sizes]
    batch_size = int(settings.MONITOR_WRITE_BATCH_SIZE)
    batches = [max(1, math.ceil(n / batch_size)) for n in sizes]
    scenario.add(
        info("N, instances in transit", cell(sizes)),
        info(f"write batches (MONITOR_WRITE_BATCH_SIZE {batch_size})", cell(batches)),
        info(f"list pages (pageSize {page_size})", cell(pages)),
    )
    for name in PASSES:
        passes = [by_size[n]["passes"][name] for n in sizes]
        calls = [p["novita_calls"] for p in passes]
        queries = [p["queries"] for p in passes]
        scenario.add(
            Figure(
                f"{name}: Novita calls",
                cell(calls),
                target="pages + <= 2",
                met=all(c <= pg + 2 for c, pg in zip(calls, pages, strict=True)),
            )
        )
        # Writes go in batches of MONITOR_WRITE_BATCH_SIZE rows: queries may grow with the
        # number of batches, never with the number of instances.
        per_batch = [q / batches[i] for i, q in enumerate(queries)]
        scenario.add(
            Figure(
                f"{name}: database queries (per write batch)",
                f"{cell(queries)}  ({cell([round(v, 1) for v in per_batch])})",
                target="per batch the same at every N (+- 2)",
                met=max(per_batch) - per_batch[0] <= 2,
            )
        )
        scenario.add(
            info(f"{name}: time", cell([p["seconds"] for p in passes]), "s"),
            info(
                f"{name}: of which waiting for the rate ceiling",
                cell([p["rate_limit_wait_seconds"] for p in passes]),
                "s",
            ),
        )
    scenario.details = {
        "list_page_size": page_size,
        "passes": list(PASSES),
        "by_size": {str(n): v for n, v in by_size.items()},
    }
    return scenario
