"""GET /api/v1/metrics/: a JSON summary of what is running and what it costs, for a tenant (its
own) or for staff (everything, plus the control plane's own state).

Prometheus (`/metrics`) is the time series; this is the one-look answer to "what do I have, what
does it bill, what is stuck": instances by status, the GPUs and the hourly price of what holds a
GPU, the tenant's quota, jobs and webhook deliveries by status, and spot recoveries. A handful
of aggregate queries, whatever the number of rows, each through its app's selectors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NotRequired, TypedDict

from django.utils import timezone

from billing.ledger import money_text
from billing.selectors import month_start, tenant_rate, tenant_spent
from catalog.selectors import catalog_last_sync_at
from instances.selectors import (
    instance_counts_by_status,
    instance_usage,
    monitor_passes_count,
    timestamp_text,
    usd_text,
)
from jobs.selectors import job_counts_by_status
from novitai.novita.client import get_client
from tenants.selectors import Tenant
from webhooks.selectors import delivery_counts_by_status


class InstancesSummary(TypedDict):
    by_status: dict[str, int]
    live: int
    gpus_live: int
    holding_a_gpu: int
    gpus_held: int


class Spend(TypedDict):
    usd_per_hour: str  # exact decimal USD, at least cents
    instances: int
    this_month_usd: str  # the cost ledger: spent since the month began (UTC)
    rate_usd_per_hour: str  # the cost ledger: compute and stopped disks, right now


class ByStatus(TypedDict):
    by_status: dict[str, int]


class Quota(TypedDict):
    max_instances: int | None
    max_gpus: int | None
    instances: int
    gpus: int


class ControlPlane(TypedDict):
    monitor_passes: int
    novita_circuit: str
    catalog_last_sync_at: str | None


class MetricsSummary(TypedDict):
    """The body of GET /api/v1/metrics/ (its OpenAPI shape: overview/api/views.py)."""

    scope: Literal["tenant", "all"]
    tenant: str | None
    generated_at: str | None
    instances: InstancesSummary
    spend: Spend
    spot_recoveries: int
    jobs: ByStatus
    webhook_deliveries: ByStatus
    quota: NotRequired[Quota]  # a tenant's
    control_plane: NotRequired[ControlPlane]  # staff's


def metrics_summary(*, tenant: Tenant | None, now: datetime | None = None) -> MetricsSummary:
    """The summary for `tenant`; None: every tenant's (staff), with the control plane's state."""
    usage = instance_usage(tenant=tenant)
    now = now or timezone.now()
    summary: MetricsSummary = {
        "scope": "tenant" if tenant is not None else "all",
        "tenant": tenant.name if tenant is not None else None,
        "generated_at": timestamp_text(now),
        "instances": {
            "by_status": instance_counts_by_status(tenant=tenant),
            "live": usage.live,
            "gpus_live": usage.gpus_live,
            "holding_a_gpu": usage.holding_a_gpu,
            "gpus_held": usage.gpus_held,
        },
        # price_per_hour is the offer's price for the instance's GPUs (Novita's, in USD).
        "spend": {
            "usd_per_hour": usd_text(usage.usd_per_hour) or "0.00",
            "instances": usage.holding_a_gpu,
            "this_month_usd": money_text(
                tenant_spent(tenant=tenant, start=month_start(now), end=now, now=now)
            ),
            "rate_usd_per_hour": money_text(tenant_rate(tenant=tenant)),
        },
        "spot_recoveries": usage.spot_recoveries,
        "jobs": {"by_status": job_counts_by_status(tenant=tenant)},
        "webhook_deliveries": {"by_status": delivery_counts_by_status(tenant=tenant)},
    }
    if tenant is not None:
        summary["quota"] = {
            "max_instances": tenant.max_instances,
            "max_gpus": tenant.max_gpus,
            "instances": usage.live,
            "gpus": usage.gpus_live,
        }
    else:
        summary["control_plane"] = control_plane()
    return summary


def control_plane() -> ControlPlane:
    """The state of novitai itself, for staff: monitoring passes, Novita's circuit, catalog."""
    return {
        "monitor_passes": monitor_passes_count(),
        "novita_circuit": get_client().breaker_snapshot().state.value,
        "catalog_last_sync_at": timestamp_text(catalog_last_sync_at()),
    }
