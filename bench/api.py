"""Scenario 3: API latency under gunicorn as docker-compose runs it (3 sync workers), loaded from
a separate process for 20 s each: at a fixed offered rate by bench/loadgen.py (open loop, see why
there) and at saturation by locust (16 closed-loop users, no wait), for

    GET  /api/v1/instances/{id}/     200 req/s offered; target p99 <= 30 ms
    GET  /api/v1/instances/          100 req/s offered; target p99 <= 60 ms (10,000 rows)
    POST /api/v1/instances/          100 req/s offered; target p99 <= 50 ms

and each endpoint's database queries (in-process, CaptureQueriesContext), the list's at two page
sizes. The rows are ANALYZEd after the bulk inserts, as autovacuum would within a minute (with
the statistics of an empty table the list's plan sorts every row). The worker and beat are
stopped: this measures the web tier (a create's provision task is queued, and dropped at the
end). The tenant's key is not throttled in practice (API_THROTTLE_RATE=100000000/min; the
throttle's counter still runs on every request).
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.client import NO_RECEIVER, PRODUCT, REGION, TEMPLATE, create_body
from bench.db import analyze, clear_instances
from bench.profiling import cpu_between, cpu_sample
from bench.report import RESULTS, Figure, Scenario, at_most, equal, info
from bench.stack import BIN, ROOT, THROTTLE_RATE, Stack, flush_broker, memory, say

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# endpoint: (offered req/s, p99 target ms)
TARGETS = {"retrieve": (200, 30.0), "list": (100, 60.0), "create": (100, 50.0)}
# Before each endpoint's measurement: its code paths and connections warmed up.
WARM_UP_RATE, WARM_UP_SECONDS = 50.0, 3.0
SATURATION_USERS = 16
LIST_PAGE_SIZES = (50, 200)  # the default page size and the maximum


def seed_rows(n: int) -> list[str]:
    """n instances of the tenant in a realistic mix of statuses, each with its provision job,
    by bulk inserts; returns their ids."""
    from django.utils import timezone

    from instances.models import FailureReason, Instance, InstanceStatus
    from instances.services import novita_name_for
    from jobs.models import Job, JobStatus
    from tenants.models import Tenant

    tenant = Tenant.objects.get(name="bench")
    rng = random.Random(7)
    now = timezone.now()
    statuses = [
        (InstanceStatus.READY, 0.35),
        (InstanceStatus.STOPPED, 0.1),
        (InstanceStatus.TERMINATED, 0.4),
        (InstanceStatus.FAILED, 0.1),
        (InstanceStatus.HEALTH_CHECKING, 0.05),
    ]
    ids: list[str] = []
    for start in range(0, n, 1000):
        jobs, rows = [], []
        for i in range(start, min(n, start + 1000)):
            instance_id = uuid.uuid4()
            created = now - timedelta(seconds=rng.uniform(60, 30 * 86400))
            status = rng.choices([s for s, _ in statuses], [w for _, w in statuses])[0]
            finished = status != InstanceStatus.HEALTH_CHECKING
            job = Job(
                kind="provision",
                task_name="instances.provision",
                tenant=tenant,
                subject_type="instance",
                subject_id=instance_id,
                status=JobStatus.SUCCEEDED if finished else JobStatus.WAITING,
                attempts=1,
                created_at=created,
                started_at=created,
                finished_at=created + timedelta(seconds=40) if finished else None,
            )
            novita_id = f"{rng.getrandbits(64):016x}"
            host = "127.0.0.1:9"
            rows.append(
                Instance(
                    id=instance_id,
                    tenant=tenant,
                    name=f"seed-{i:05d}",
                    status=status,
                    failure_reason=FailureReason.NO_CAPACITY if status == "failed" else "",
                    failure_message="No capacity in the 1 offer(s) tried."
                    if status == "failed"
                    else "",
                    template_id=TEMPLATE,
                    product_names=[PRODUCT],
                    rootfs_size=60,
                    webhook_url=NO_RECEIVER,
                    novita_name=novita_name_for(instance_id),
                    novita_instance_id=novita_id,
                    novita_product_id="4090.16c62g.sim",
                    product_name=PRODUCT,
                    region=REGION,
                    cluster_id="us-tx-2",
                    price_per_hour="0.34",
                    upstream_status="running",
                    endpoints=[
                        {
                            "port": 8888,
                            "type": "http",
                            "url": f"http://{host}/_app/{novita_id}/8888/",
                            "healthy": True,
                        },
                        {
                            "port": 7860,
                            "type": "http",
                            "url": f"http://{host}/_app/{novita_id}/7860/",
                            "healthy": True,
                        },
                        {"port": 22, "type": "tcp", "url": host, "healthy": None},
                    ],
                    current_job=job,
                    created_at=created,
                    provisioned_at=created + timedelta(seconds=5),
                    ready_at=created + timedelta(seconds=40),
                    released_at=created if status == "failed" else None,
                    terminated_at=created + timedelta(hours=2) if status == "terminated" else None,
                )
            )
            ids.append(str(instance_id))
            jobs.append(job)
        Job.objects.bulk_create(jobs)
        Instance.objects.bulk_create(rows)
    return ids


def query_counts(api_key: str, ids: list[str]) -> dict[str, int]:
    """Database queries of one request to each endpoint, in-process (the same code and database)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    requests: dict[str, tuple[str, str, Any]] = {
        "retrieve": ("get", f"/api/v1/instances/{ids[0]}/", None),
        **{
            f"list page_size={s}": ("get", f"/api/v1/instances/?page_size={s}", None)
            for s in LIST_PAGE_SIZES
        },
        "create": ("post", "/api/v1/instances/", create_body("qc-1")),
    }
    counts: dict[str, int] = {}
    for name, (method, path, body) in requests.items():
        call = getattr(client, method)
        call(path, body, content_type="application/json") if body else call(path)  # warm-up
        if body:
            body = {**body, "name": "qc-2"}
        with CaptureQueriesContext(connection) as queries:
            response = call(path, body, content_type="application/json") if body else call(path)
        if response.status_code not in (200, 202):
            raise RuntimeError(f"{name}: {response.status_code} {response.content[:300]!r}")
        counts[name] = len(queries.captured_queries)
    return counts


@dataclass
class Load:
    endpoint: str
    mode: str  # "fixed" | "saturation"
    users: int
    offered: float | None
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    p50: float | None = None
    p99: float | None = None
    max: float | None = None
    profile: dict[str, Any] | None = None
    cpu: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def run_fixed(
    stack: Stack, *, endpoint: str, rate: float, seconds: float, env: dict[str, str], profile: bool
) -> Load:
    """The open-loop generator in its own process at `rate` req/s."""
    out = stack.run_dir / f"loadgen-{endpoint}-{rate:g}.json"
    argv = [
        str(BIN / "python"),
        "-m",
        "bench.loadgen",
        "--url",
        stack.web_url,
        "--key",
        env["BENCH_API_KEY"],
        "--endpoint",
        endpoint,
        "--rate",
        f"{rate:g}",
        "--seconds",
        f"{seconds:g}",
        "--ids",
        env["BENCH_IDS"],
        "--out",
        str(out),
    ]
    load = Load(endpoint, "fixed", 0, rate)
    before = cpu_sample(stack.children("web"))
    load.profile = _run(
        stack,
        argv,
        log=out.with_suffix(".log"),
        seconds=seconds,
        profile_as=f"web-{endpoint}" if profile else "",
    )
    after = cpu_sample(stack.children("web"))
    result = json.loads(out.read_text())
    load.requests, load.failures, load.rps = result["requests"], result["errors"], result["rps"]
    load.p50, load.p99, load.max = result["p50_ms"], result["p99_ms"], result["max_ms"]
    load.cpu = cpu_between(before, after, load.requests)
    return load


def run_saturation(stack: Stack, *, endpoint: str, seconds: float, env: dict[str, str]) -> Load:
    """locust, SATURATION_USERS closed-loop users without a pause, in its own process."""
    users = SATURATION_USERS
    prefix = stack.run_dir / f"locust-{endpoint}"
    argv = [
        str(BIN / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        stack.web_url,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds:g}s",
        "--reset-stats",
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
        "--skip-log-setup",
        "--exit-code-on-error",
        "0",
    ]
    env = {
        **env,
        "BENCH_ENDPOINT": endpoint,
        "PYTHONPATH": str(ROOT),
    }  # the locustfile imports bench
    _run(stack, argv, log=prefix.with_suffix(".log"), seconds=seconds, env=env)
    stats = prefix.with_name(prefix.name + "_stats.csv")
    if not stats.exists():
        raise RuntimeError(
            f"locust wrote no statistics ({endpoint}); see its log in the run folder"
        )
    with stats.open() as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    load = Load(endpoint, "saturation", users, None)
    load.requests, load.failures = int(row["Request Count"]), int(row["Failure Count"])
    load.rps = round(float(row["Requests/s"]), 1)
    load.p50, load.p99 = _ms(row["50%"]), _ms(row["99%"])
    load.max = _ms(row["Max Response Time"])
    return load


def _run(
    stack: Stack,
    argv: list[str],
    *,
    log: Path,
    seconds: float,
    env: dict[str, str] | None = None,
    profile_as: str = "",
) -> dict[str, Any] | None:
    """Runs a load tool to its end (its output in `log`); with `profile_as`, profiles the web
    workers meanwhile (py-spy, the middle half of the run)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        profile = None
        try:
            if profile_as:
                from bench.profiling import py_spy_top

                time.sleep(seconds / 4)
                profile = py_spy_top(stack.children("web"), seconds=seconds / 2, name=profile_as)
            process.wait(timeout=seconds + 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} exited with {process.returncode}; see {log}")
    return profile


def _ms(value: str) -> float | None:
    return None if value in ("", "N/A") else round(float(value), 1)


def run(stack: Stack, *, rows: int, seconds: float, profile: bool = False) -> Scenario:
    say("== scenario 3: API latency (gunicorn, 3 sync workers; the load from other processes)")
    stack.stop("worker", "worker-events", "worker-webhooks", "beat")
    if "web" not in stack.procs:
        stack.start_web()
    api_key, _ = stack.tenant()
    clear_instances()
    started = time.time()
    ids = seed_rows(rows)
    analyze()
    say(f"  {rows:,} instances seeded by bulk inserts in {time.time() - started:.1f} s")
    queries = query_counts(api_key, ids)
    say(f"  database queries per request: {queries}")
    ids_file = stack.run_dir / "instance-ids.txt"
    ids_file.write_text("\n".join(ids))
    env = {"BENCH_API_KEY": api_key, "BENCH_IDS": str(ids_file)}
    loads: list[Load] = []
    for endpoint in ("retrieve", "list", "create"):
        rate = float(TARGETS[endpoint][0])
        stack.check_alive("web")
        run_fixed(
            stack,
            endpoint=endpoint,
            rate=WARM_UP_RATE,
            seconds=WARM_UP_SECONDS,
            env=env,
            profile=False,
        )
        say(f"  {endpoint} at {rate:g} req/s offered (open loop), {seconds:g} s")
        loads.append(
            run_fixed(
                stack, endpoint=endpoint, rate=rate, seconds=seconds, env=env, profile=profile
            )
        )
        _said(loads[-1])
        say(f"  {endpoint} at saturation (locust, {SATURATION_USERS} users), {seconds:g} s")
        loads.append(run_saturation(stack, endpoint=endpoint, seconds=seconds, env=env))
        _said(loads[-1])
    dropped = flush_broker()
    scenario = _scenario(loads, queries, rows, dropped)
    web = memory(stack)["web"]
    scenario.add(
        info("web workers: peak RSS of one, after these runs", web["workers_peak_max_mib"], "MiB")
    )
    scenario.details["memory_after"] = web
    return scenario


def _said(load: Load) -> None:
    say(
        f"    {load.rps} req/s, p50 {load.p50} ms, p99 {load.p99} ms, "
        f"{load.failures} errors of {load.requests}"
    )


def _scenario(loads: list[Load], queries: dict[str, int], rows: int, dropped: int) -> Scenario:
    scenario = Scenario("3-api", "3. API latency (gunicorn, 3 sync workers, as compose runs it)")
    scenario.add(
        info("load at a fixed rate", "bench/loadgen.py: open loop, its own process"),
        info("load at saturation", f"locust: {SATURATION_USERS} users, no wait, its own process"),
    )
    for load in loads:
        offered, target = TARGETS[load.endpoint]
        if load.mode == "fixed":
            p = f"{load.endpoint} @ {offered} req/s: "
            scenario.add(
                info(p + "throughput / p50", f"{load.rps} req/s / {load.p50} ms"),
                at_most(p + "p99", load.p99, target, "ms"),
            )
            if load.cpu is not None:
                ms, cores = load.cpu["cpu_ms_per_request"], load.cpu["cores"]
                scenario.add(
                    info(
                        p + "CPU per request: web / Postgres", f"{ms['web']} / {ms['postgres']} ms"
                    ),
                    info(
                        p + "cores busy: all / web / pg / load / other",
                        " / ".join(
                            str(cores[k])
                            for k in ("machine_busy", "web", "postgres", "load_tool", "other")
                        ),
                        note="of 2; other: processes outside the benchmark",
                    ),
                )
        else:
            p = f"{load.endpoint} saturated: "
            scenario.add(
                info(p + "throughput / p50 / p99", f"{load.rps} req/s / {load.p50} / {load.p99} ms")
            )
        scenario.add(equal(p + "errors", load.failures, 0))
    scenario.add(info("queries: retrieve", queries["retrieve"]))
    list_counts = [queries[f"list page_size={s}"] for s in LIST_PAGE_SIZES]
    scenario.add(
        Figure(
            "queries: list at page_size " + " / ".join(str(s) for s in LIST_PAGE_SIZES),
            " / ".join(str(c) for c in list_counts),
            target="equal (no N+1)",
            met=len(set(list_counts)) == 1,
        ),
        info("queries: create", queries["create"]),
    )
    scenario.details = {
        "rows_seeded": rows,
        "throttle_rate": THROTTLE_RATE,
        "queries_per_request": queries,
        "loads": [load.as_json() for load in loads],
        "provision_tasks_dropped_unconsumed": dropped,
        "profiles": str(RESULTS / "profiles"),
    }
    return scenario
