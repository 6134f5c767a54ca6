"""/health/live and /health/ready.

Readiness has one entry per dependency, each with a status and a latency. A failed check named
in HEALTH_REQUIRED_CHECKS makes the answer 503; the others only mark it "degraded".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection, connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 5.0

CheckResult = dict[str, Any]


class CheckFailed(Exception):
    """A dependency answered, but not well enough; the message says why."""


def check_database() -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        close_old_connections()
        connection.close()
    return {"vendor": connection.vendor}


def check_cache() -> CheckResult:
    key = "health:probe"
    value = str(time.time())
    cache.set(key, value, timeout=30)
    if cache.get(key) != value:
        raise CheckFailed("cache did not return what was written")
    return {"backend": str(settings.CACHES["default"]["BACKEND"]).rsplit(".", 1)[-1]}


def check_broker() -> CheckResult:
    from novitai.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        return {"transport": conn.transport_cls}


def check_worker() -> CheckResult:
    from novitai.celery import WORKER_HEARTBEAT_KEY

    beat = cache.get(WORKER_HEARTBEAT_KEY)
    if not beat:
        raise CheckFailed("no worker heartbeat seen")
    age = time.time() - float(beat["at"])
    if age > settings.HEALTH_WORKER_MAX_AGE_SECONDS:
        raise CheckFailed(f"last worker heartbeat {age:.0f}s ago")
    if float(beat["at"]) < settings.NOVITAI_STARTED_AT:
        # The cache (a file, or Redis with its append-only file) outlives a restart: a
        # heartbeat from before this start may be a worker of the previous run, now gone.
        raise CheckFailed(
            f"no worker heartbeat since this start (the last one, {age:.0f}s ago, is older)"
        )
    return {"hostname": beat["hostname"], "last_seen_seconds": round(age, 1)}


def _waited(what: str, since: float | None, now: float) -> CheckResult:
    """A queue is served if nothing due in it has waited longer than HEALTH_QUEUE_MAX_AGE_SECONDS
    (the sweepers re-send a lost message well within that)."""
    waited = max(0.0, now - since) if since is not None else 0.0
    if waited > settings.HEALTH_QUEUE_MAX_AGE_SECONDS:
        raise CheckFailed(f"{what} due {waited:.0f}s ago and not taken: the queue is not served")
    return {"oldest_due_seconds": round(waited, 1)}


def check_jobs_queue() -> CheckResult:
    from django.utils import timezone

    from jobs.selectors import job_oldest_due_at

    now = timezone.now()
    oldest = job_oldest_due_at(now=now)
    return _waited("a job", oldest.timestamp() if oldest else None, now.timestamp())


def check_webhooks_queue() -> CheckResult:
    from django.utils import timezone

    from webhooks.selectors import delivery_oldest_due_at

    now = timezone.now()
    oldest = delivery_oldest_due_at(now=now)
    return _waited("a webhook delivery", oldest.timestamp() if oldest else None, now.timestamp())


def check_monitor() -> CheckResult:
    """Monitoring is a pass every MONITOR_INTERVAL_SECONDS, not rows: its last pass is what
    tells whether the monitor queue is served."""
    from instances.selectors import monitor_last_pass_at

    at = monitor_last_pass_at()
    if at is None:
        raise CheckFailed("no monitoring pass seen")
    age = max(0.0, time.time() - at)
    if age > settings.HEALTH_QUEUE_MAX_AGE_SECONDS:
        raise CheckFailed(f"last monitoring pass {age:.0f}s ago: the monitor queue is not served")
    return {"last_pass_seconds": round(age, 1)}


def check_novita() -> CheckResult:
    from novitai.novita.health import novita_health

    return novita_health()


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "worker": check_worker,
    "novita": check_novita,
    "jobs_queue": check_jobs_queue,
    "webhooks_queue": check_webhooks_queue,
    "monitor": check_monitor,
}


def _run(check: Callable[[], CheckResult]) -> CheckResult:
    started = time.perf_counter()
    try:
        extra = check()
        result: CheckResult = {"status": "ok", **extra}
    except Exception as exc:
        result = {"status": "down", "error": str(exc) or type(exc).__name__}
    finally:
        connections.close_all()  # this thread's, which ends with the check
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def readiness() -> tuple[bool, CheckResult]:
    required = set(settings.HEALTH_REQUIRED_CHECKS)
    results: CheckResult = {}
    with ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="health") as pool:
        futures = {name: pool.submit(_run, check) for name, check in CHECKS.items()}
        deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                results[name] = {"status": "down", "error": "timed out"}
            results[name]["required"] = name in required
    ok = all(r["status"] == "ok" for n, r in results.items() if n in required)
    degraded = any(r["status"] != "ok" for r in results.values())
    overall = "down" if not ok else ("degraded" if degraded else "ok")
    return ok, {"status": overall, "checks": results}


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    ok, body = readiness()
    response = JsonResponse(body, status=200 if ok else 503)
    if not ok:
        logger.warning("readiness check failed: %s", body)
        response._has_been_logged = True  # type: ignore[attr-defined]  # that line is enough
    return response
