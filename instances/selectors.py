"""Reads on instances, and the instance representation (API answers and webhook bodies alike).

`instance_representation` is a pure function of the row (and its current job): the API
serializer and every webhook payload use it, so the two never drift apart. It never contains
the caller's environment variables, Novita's payloads or anything secret.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypedDict

from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.ledger import money_text
from billing.selectors import cost_at
from billing.services import AccountState
from instances.models import FailureReason as FailureReason  # re-exported: the import rule
from instances.models import Instance, InstanceEvent, InstanceStatus
from novitai.outages import cache_guard
from tenants.selectors import Tenant

LIVE_STATUSES = tuple(s for s in InstanceStatus.values if s != InstanceStatus.TERMINATED)
# Statuses in which an upstream GPU is held (and billed at the instance's hourly price).
HOLDING_A_GPU = (
    InstanceStatus.STARTING,
    InstanceStatus.HEALTH_CHECKING,
    InstanceStatus.READY,
    InstanceStatus.RESTARTING,
    InstanceStatus.STOPPING,
)
# The monitoring pass's bookkeeping in the cache (written by instances/monitoring/passes.py).
MONITOR_PASSES_KEY = "instances:monitor:passes"
MONITOR_LAST_PASS_KEY = "instances:monitor:last_pass_at"  # noqa: S105 - a cache key


# Columns instance_representation never reads (and that cost JSON parsing on every row).
LISTING_DEFERRED = ("tenant", "envs", "health_check", "offers_tried", "product_names")


def timestamp_text(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def usd_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


# --- the representation: what the API answers and every webhook body's `data` -----------------
# (its OpenAPI shape is InstanceSerializer's, instances/api/serializers.py; a test keeps the
# three alike)


class ProductRef(TypedDict):
    id: str
    name: str


class EndpointSummary(TypedDict):
    port: int | None
    type: str | None  # "http" | "tcp"
    url: str | None
    healthy: bool | None  # None: not checked yet


class MountSummary(TypedDict):
    volume_id: str
    name: str
    mount_path: str


class IdlePolicySummary(TypedDict):
    gpu_utilization_below: float
    for_seconds: int


class SshSummary(TypedDict):
    host: str
    port: int
    user: str
    command: str


class JobSummary(TypedDict):
    id: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    created_at: str | None
    finished_at: str | None


class InstanceRepresentation(TypedDict):
    id: str
    name: str
    status: str
    failure_reason: str | None
    failure_message: str | None
    novita_instance_id: str | None
    product: ProductRef | None
    region: str | None
    billing_mode: str
    billing_mode_requested: str
    spot_fallback: str | None
    gpu_num: int
    price_per_hour: str | None  # exact decimal USD
    cost_usd: str  # accrued so far (the cost ledger), USD to the micro-dollar
    cost_rate_usd_per_hour: str  # what it costs right now: compute, its disk while stopped, 0
    template_id: str
    rootfs_size: int
    endpoints: list[EndpointSummary]
    volumes: list[MountSummary]
    ssh: SshSummary | None  # while it runs; the password only from GET …/ssh/
    logs_url: str | None
    created_at: str | None  # timestamps: ISO 8601, UTC, "Z"
    provisioned_at: str | None
    ready_at: str | None
    stopped_at: str | None
    terminated_at: str | None
    webhook_url: str | None
    on_preempt: str
    recoveries: int
    idle_timeout_seconds: int | None
    on_idle: str
    last_active_at: str | None
    idle_stop_at: str | None
    idle_policy: IdlePolicySummary | None
    gpu_utilization: float | None
    gpu_utilization_at: str | None
    max_spend_usd: str | None  # USD
    on_max_spend: str
    spend_limit_reached_at: str | None
    expires_at: str | None
    on_expire: str
    job: JobSummary | None
    capacity_wait_seconds: int
    capacity_wait_until: str | None
    next_attempt_at: str | None
    capacity_attempts: int
    spot_reclaim_at: str | None


def job_summary(instance: Instance) -> JobSummary | None:
    job = instance.current_job
    if job is None:
        return None
    return {
        "id": str(job.pk),
        "kind": job.kind,
        "status": job.status,
        "attempts": job.attempts,
        "last_error": job.last_error or None,
        "created_at": timestamp_text(job.created_at),
        "finished_at": timestamp_text(job.finished_at),
    }


def endpoint_summary(endpoint: dict[str, Any]) -> EndpointSummary:
    return {
        "port": endpoint.get("port"),
        "type": endpoint.get("type"),
        "url": endpoint.get("url") or None,
        "healthy": endpoint.get("healthy"),
    }


def idle_stop_at(instance: Instance) -> datetime | None:
    """When a ready instance with an idle timeout is due to be stopped: its timeout after the
    later of becoming ready and its last heartbeat."""
    if instance.status != InstanceStatus.READY or not instance.idle_timeout:
        return None
    active = [t for t in (instance.ready_at, instance.last_active_at) if t is not None]
    return max(active) + instance.idle_timeout if active else None


SSH_STATUSES = (InstanceStatus.HEALTH_CHECKING, InstanceStatus.READY)


def ssh_summary(instance: Instance) -> SshSummary | None:
    """Where to ssh, while the instance runs (its details are read once a run)."""
    ssh = instance.ssh or {}
    if instance.status not in SSH_STATUSES or not ssh.get("host"):
        return None
    return {
        "host": str(ssh["host"]),
        "port": int(ssh.get("port") or 22),
        "user": str(ssh.get("user") or ""),
        "command": str(ssh.get("command") or ""),
    }


def instance_cost_usd(instance: Instance, now: datetime) -> Decimal:
    """Accrued so far: the ledger's closed segments and the open phase's part (billing/)."""
    return cost_at(
        AccountState(
            accrued_usd=instance.cost_accrued_usd,
            rate_usd_per_hour=instance.cost_rate_usd_per_hour,
            since=instance.cost_since,
        ),
        now,
    )


def instance_representation(instance: Instance) -> InstanceRepresentation:
    product: ProductRef | None = (
        {"id": instance.novita_product_id, "name": instance.product_name}
        if instance.novita_product_id
        else None
    )
    return {
        "id": str(instance.pk),
        "name": instance.name,
        "status": instance.status,
        "failure_reason": instance.failure_reason or None,
        "failure_message": instance.failure_message or None,
        "novita_instance_id": instance.novita_instance_id or None,
        "product": product,
        "region": instance.region or None,
        "billing_mode": instance.billing_mode,
        "billing_mode_requested": instance.billing_mode_requested or instance.billing_mode,
        "spot_fallback": instance.spot_fallback or None,
        "gpu_num": instance.gpu_num,
        "price_per_hour": usd_text(instance.price_per_hour),
        "cost_usd": money_text(instance_cost_usd(instance, timezone.now())),
        "cost_rate_usd_per_hour": money_text(instance.cost_rate_usd_per_hour),
        "template_id": instance.template_id,
        "rootfs_size": instance.rootfs_size,
        "endpoints": [endpoint_summary(e) for e in instance.endpoints],
        "volumes": [
            {"volume_id": v["volume_id"], "name": v["name"], "mount_path": v["mount_path"]}
            for v in instance.volumes
        ],
        "ssh": ssh_summary(instance),
        "logs_url": instance.logs_url or None,
        "created_at": timestamp_text(instance.created_at),
        "provisioned_at": timestamp_text(instance.provisioned_at),
        "ready_at": timestamp_text(instance.ready_at),
        "stopped_at": timestamp_text(instance.stopped_at),
        "terminated_at": timestamp_text(instance.terminated_at),
        "webhook_url": instance.webhook_url or None,
        "on_preempt": instance.on_preempt,
        "recoveries": instance.recoveries,
        "idle_timeout_seconds": (
            int(instance.idle_timeout.total_seconds()) if instance.idle_timeout else None
        ),
        "on_idle": instance.on_idle,
        "last_active_at": timestamp_text(instance.last_active_at),
        "idle_stop_at": timestamp_text(idle_stop_at(instance)),
        "idle_policy": (
            {
                "gpu_utilization_below": instance.idle_gpu_below,
                "for_seconds": int(instance.idle_gpu_for.total_seconds()),
            }
            if instance.idle_gpu_below is not None and instance.idle_gpu_for is not None
            else None
        ),
        "gpu_utilization": instance.gpu_utilization,
        "gpu_utilization_at": timestamp_text(instance.gpu_utilization_at),
        "max_spend_usd": usd_text(instance.max_spend_usd),
        "on_max_spend": instance.on_max_spend,
        "spend_limit_reached_at": timestamp_text(instance.spend_limit_reached_at),
        "expires_at": timestamp_text(instance.expires_at),
        "on_expire": instance.on_expire,
        "job": job_summary(instance),
        "capacity_wait_seconds": instance.capacity_wait_seconds,
        "capacity_wait_until": timestamp_text(capacity_wait_until(instance)),
        "next_attempt_at": timestamp_text(
            instance.next_attempt_at
            if instance.status == InstanceStatus.WAITING_FOR_CAPACITY
            else None
        ),
        "capacity_attempts": instance.capacity_attempts,
        "spot_reclaim_at": timestamp_text(instance.spot_reclaim_at),
    }


def capacity_wait_until(instance: Instance) -> datetime | None:
    """While it waits for capacity (or has waited): when the wait ends."""
    if instance.waiting_since is None or instance.status not in (
        InstanceStatus.WAITING_FOR_CAPACITY,
        InstanceStatus.PROVISIONING,
    ):
        return None
    return instance.waiting_since + timedelta(seconds=instance.capacity_wait_seconds)


def event_representation(event: InstanceEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "from_status": event.from_status or None,
        "to_status": event.to_status,
        "reason": event.reason,
        "message": event.message,
        "actor": event.actor,
        "details": event.data,
        "at": timestamp_text(event.at),
    }


def instance_list(
    *,
    tenant: Tenant | None,
    statuses: list[str] | None = None,
    name: str | None = None,
    region: str | None = None,
    for_listing: bool = False,
) -> QuerySet[Instance]:
    """A tenant's instances (every tenant's for staff: tenant None), newest first.

    `for_listing`: only what instance_representation reads (no tenant join, none of the JSON
    columns it does not show), for pages of many rows."""
    if for_listing:
        qs = Instance.objects.select_related("current_job").defer(*LISTING_DEFERRED)
    else:
        qs = Instance.objects.select_related("current_job", "tenant")
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    if statuses:
        qs = qs.filter(status__in=statuses)
    if name:
        qs = qs.filter(name=name)
    if region:
        qs = qs.filter(region__iexact=region)
    return qs.order_by("-created_at", "-id")


def instance_get(*, tenant: Tenant | None, instance_id: uuid.UUID) -> Instance | None:
    return instance_list(tenant=tenant).filter(pk=instance_id).first()


def instance_events(*, instance: Instance) -> QuerySet[InstanceEvent]:
    return InstanceEvent.objects.filter(instance=instance).order_by("at", "id")


# --- the operator's console (overview/dashboard.py) ------------------------------------------


def instances_past_deadline(*, now: datetime) -> QuerySet[Instance]:
    """Instances still in a phase whose deadline has passed (the monitor fails them on its next
    pass; one that stays here is stuck), the longest overdue first."""
    return Instance.objects.filter(phase_deadline_at__lt=now).order_by("phase_deadline_at", "id")


def instances_failed_since(*, since: datetime, reason: str | None = None) -> QuerySet[Instance]:
    """Instances that failed since then (with that reason), whatever they did afterwards."""
    events = InstanceEvent.objects.filter(to_status=InstanceStatus.FAILED, at__gte=since)
    if reason is not None:
        events = events.filter(reason=reason)
    return Instance.objects.filter(pk__in=events.values("instance_id"))


def instance_failures_by_reason(*, since: datetime) -> dict[str, int]:
    """How many instances failed since then, per reason, most first."""
    rows = (
        InstanceEvent.objects.filter(to_status=InstanceStatus.FAILED, at__gte=since)
        .values("reason")
        .annotate(n=Count("instance_id", distinct=True))
        .order_by("-n", "reason")
    )
    return {row["reason"]: row["n"] for row in rows}


# --- counts (one aggregate query each, whatever the number of rows) ----------------------------


def _scoped(qs: QuerySet[Instance], tenant: Tenant | None) -> QuerySet[Instance]:
    return qs.filter(tenant=tenant) if tenant is not None else qs


def instance_counts_by_status(*, tenant: Tenant | None) -> dict[str, int]:
    """Instances by status (every status, 0 included): a tenant's, or everyone's (None)."""
    counts = dict.fromkeys(InstanceStatus.values, 0)
    rows = _scoped(Instance.objects.all(), tenant).values("status").annotate(n=Count("pk"))
    for row in rows.order_by():
        counts[row["status"]] = row["n"]
    return counts


@dataclass(frozen=True)
class InstanceUsage:
    """What a tenant's (or everyone's) instances hold: live ones (not terminated) and those
    holding a GPU, with their hourly price (the offer's, Novita's, in USD)."""

    live: int
    gpus_live: int
    holding_a_gpu: int
    gpus_held: int
    usd_per_hour: Decimal  # of those holding a GPU
    spot_recoveries: int  # of the live ones


def instance_usage(*, tenant: Tenant | None) -> InstanceUsage:
    holding, living = Q(status__in=HOLDING_A_GPU), ~Q(status=InstanceStatus.TERMINATED)
    totals = _scoped(Instance.objects.all(), tenant).aggregate(
        held_n=Count("pk", filter=holding),
        held_gpus=Coalesce(Sum("gpu_num", filter=holding), 0),
        held_usd=Sum("price_per_hour", filter=holding),
        live_n=Count("pk", filter=living),
        live_gpus=Coalesce(Sum("gpu_num", filter=living), 0),
        recoveries=Coalesce(Sum("recoveries", filter=living), 0),
    )
    return InstanceUsage(
        live=totals["live_n"],
        gpus_live=totals["live_gpus"],
        holding_a_gpu=totals["held_n"],
        gpus_held=totals["held_gpus"],
        usd_per_hour=totals["held_usd"] or Decimal(0),
        spot_recoveries=totals["recoveries"],
    )


# --- the monitoring pass ------------------------------------------------------------------------


def monitor_passes_count() -> int:
    """Monitoring passes run since the cache was last emptied (0 without the cache)."""
    count = cache_guard("monitor_passes", lambda: cache.get(MONITOR_PASSES_KEY), None, cache=cache)
    return int(count or 0)


def monitor_last_pass_at() -> float | None:
    """Unix time the last pass ended; None when none was seen (raises if the cache does)."""
    at = cache.get(MONITOR_LAST_PASS_KEY)
    return float(at) if at is not None else None
