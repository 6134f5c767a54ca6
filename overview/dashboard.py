"""The operator's console: what the admin's index shows first thing in the morning.

Instances by status, the GPUs held and what they bill per hour now, failures of the last 24 h
by reason, instances stuck past their phase deadline, Novita's health and circuit, every queue's
depth and the oldest thing due on it, failing webhook endpoints, and the jobs and deliveries by
status. The numbers the API's summary has too come from the summary itself (GET
/api/v1/metrics/ for staff), so that the two never disagree; the rest from each app's selectors.
Each number links to the admin's list filtered to exactly what it counts.

Nothing here calls Novita beyond what /health/ready does (its reachability is cached, shared,
for 15 s, and nothing is sent while the breaker is open); the broker is asked for its queues'
lengths with a short timeout, and a dependency that does not answer is shown as such.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from instances.selectors import (
    FailureReason,
    InstanceStatus,
    instance_failures_by_reason,
    instances_past_deadline,
)
from jobs.selectors import JobStatus, job_oldest_due_by_task
from webhooks.selectors import DeliveryStatus, delivery_failing_endpoints, delivery_oldest_due_at

logger = logging.getLogger(__name__)

FAILURE_WINDOW = timedelta(hours=24)
REFRESH_SECONDS = 15
QUEUES = ("provision", "default", "monitor", "webhooks")
BROKER_TIMEOUT_SECONDS = 2.0
# The admin's filters the numbers link to (instances/admin.py).
FILTER_FAILED_24H = "failed_24h"
FILTER_PAST_DEADLINE = "past_deadline"
FILTER_HOLDING_A_GPU = "holding_gpu"
FILTER_LIVE = "live"


@dataclass(frozen=True)
class Count:
    """A number and the admin list that shows exactly what it counts."""

    key: str
    label: str
    n: int
    url: str


def _changelist(model: str, **params: str) -> str:
    url = reverse(f"admin:{model}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _seconds_since(at: datetime | float | None, now: datetime) -> float | None:
    if at is None:
        return None
    stamp = at.timestamp() if isinstance(at, datetime) else at
    return round(max(0.0, now.timestamp() - stamp), 1)


def queue_of(task_name: str) -> str:
    """The queue CELERY_TASK_ROUTES sends a task to (the default queue otherwise)."""
    for pattern, route in settings.CELERY_TASK_ROUTES.items():
        if fnmatch.fnmatchcase(task_name, pattern):
            return str(route["queue"])
    return str(settings.CELERY_TASK_DEFAULT_QUEUE)


def queue_depths(names: tuple[str, ...] = QUEUES) -> dict[str, int | None]:
    """Messages waiting in each queue of the broker; None for all when it does not answer."""
    from kombu.exceptions import ChannelError

    from novitai.celery import app

    depths: dict[str, int | None] = {}
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
            for name in names:
                channel = conn.channel()
                try:
                    depths[name] = int(channel.queue_declare(queue=name, passive=True)[1])
                except ChannelError:  # no such queue (an empty Redis list is no key): none
                    depths[name] = 0
                finally:
                    channel.close()
    except Exception as exc:
        logger.warning("dashboard: the broker's queue lengths are unknown: %s", exc)
        return dict.fromkeys(names)
    return depths


def _novita() -> dict[str, Any]:
    """Novita's reachability (cached, as /health/ready has it) and the circuit breaker."""
    from novitai.novita.client import get_client
    from novitai.novita.health import novita_health

    try:
        health = novita_health()
    except Exception as exc:
        return {
            "ok": False,
            "error": str(exc),
            "breaker": get_client().breaker_snapshot().as_dict(),
        }
    return {"ok": True, "error": "", **health}


def _check(name: str) -> dict[str, Any]:
    """One of /health/ready's checks (the worker's heartbeat, the monitor's last pass)."""
    from novitai.health import CHECKS, CheckFailed

    try:
        return {"ok": True, "error": "", **CHECKS[name]()}
    except CheckFailed as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _queues(now: datetime) -> list[dict[str, Any]]:
    depths = queue_depths()
    oldest: dict[str, tuple[datetime, str]] = {}
    for task, due in job_oldest_due_by_task(now=now).items():
        queue = queue_of(task)
        if queue not in oldest or due < oldest[queue][0]:
            oldest[queue] = (due, "job")
    delivery = delivery_oldest_due_at(now=now)
    if delivery is not None:
        oldest["webhooks"] = (delivery, "webhook delivery")
    rows = []
    for name in QUEUES:
        at: datetime | None = oldest[name][0] if name in oldest else None
        what = oldest[name][1] if name in oldest else ""
        due_url = ""
        if what == "job":
            due_url = _changelist("jobs_job", status__exact=JobStatus.PENDING)
        elif what:
            due_url = _changelist("webhooks_webhookdelivery", status__exact=DeliveryStatus.PENDING)
        rows.append(
            {
                "name": name,
                "depth": depths.get(name),
                "oldest_due_seconds": _seconds_since(at, now),
                "oldest_due_what": what,
                "oldest_due_url": due_url,
                "stale": at is not None
                and (now - at).total_seconds() > settings.HEALTH_QUEUE_MAX_AGE_SECONDS,
            }
        )
    return rows


def dashboard(*, now: datetime | None = None) -> dict[str, Any]:
    """Everything the console's index shows, as of `now`."""
    from overview.summary import metrics_summary

    now = now or timezone.now()
    summary = metrics_summary(tenant=None, now=now)
    by_status = summary["instances"]["by_status"]
    labels = dict(InstanceStatus.choices)
    instances = [
        Count(status, labels[status], by_status[status],
              _changelist("instances_instance", status__exact=status))
        for status in InstanceStatus.values
    ]  # fmt: skip
    reasons = dict(FailureReason.choices)
    failures = [
        Count(reason, reasons.get(reason, reason), n,
              _changelist("instances_instance", **{FILTER_FAILED_24H: reason}))
        for reason, n in instance_failures_by_reason(since=now - FAILURE_WINDOW).items()
    ]  # fmt: skip
    overdue = instances_past_deadline(now=now)
    stuck = [
        {
            "name": i.name,
            "status": i.status,
            "overdue_seconds": _seconds_since(i.phase_deadline_at, now),
            "url": reverse("admin:instances_instance_change", args=[i.pk]),
        }
        for i in overdue.only("id", "name", "status", "phase_deadline_at")[:10]
    ]
    jobs = summary["jobs"]["by_status"]
    deliveries = summary["webhook_deliveries"]["by_status"]
    return {
        "generated_at": now,
        "refresh_seconds": REFRESH_SECONDS,
        "instances": instances,
        "live": summary["instances"]["live"],
        "live_url": _changelist("instances_instance", **{FILTER_LIVE: "yes"}),
        "holding_a_gpu": Count(
            "holding_a_gpu",
            "holding a GPU",
            summary["instances"]["holding_a_gpu"],
            _changelist("instances_instance", **{FILTER_HOLDING_A_GPU: "yes"}),
        ),
        "gpus_held": summary["instances"]["gpus_held"],
        "usd_per_hour": summary["spend"]["usd_per_hour"],
        "failures": failures,
        "failures_total": sum(c.n for c in failures),
        "failures_url": _changelist("instances_instance", **{FILTER_FAILED_24H: "any"}),
        "past_deadline": Count(
            "past_deadline",
            "past their phase deadline",
            overdue.count(),
            _changelist("instances_instance", **{FILTER_PAST_DEADLINE: "yes"}),
        ),
        "stuck": stuck,
        "novita": _novita(),
        "worker": _check("worker"),
        "monitor": _check("monitor"),
        "queues": _queues(now),
        "failing_endpoints": [
            {**e, "url": _changelist("webhooks_webhookdelivery", q=e["target_url"])}
            for e in delivery_failing_endpoints(since=now - FAILURE_WINDOW)
        ],
        "jobs": [
            Count(s, s, jobs[s], _changelist("jobs_job", status__exact=s)) for s in JobStatus.values
        ],
        "deliveries": [
            Count(s, s, deliveries[s], _changelist("webhooks_webhookdelivery", status__exact=s))
            for s in DeliveryStatus.values
        ],
        "summary": summary,
    }
