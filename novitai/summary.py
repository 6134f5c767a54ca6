"""GET /api/v1/metrics/: a JSON summary of what is running and what it costs, for a tenant (its
own) or for staff (everything, plus the control plane's own state).

Prometheus (`/metrics`) is the time series; this is the one-look answer to "what do I have, what
does it bill, what is stuck": instances by status, the GPUs and the hourly price of what holds a
GPU, the tenant's quota, jobs and webhook deliveries by status, and spot recoveries. A handful
of aggregate queries, whatever the number of rows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from instances.models import Instance, InstanceStatus
from instances.selectors import HOLDING_A_GPU, timestamp_text, usd_text
from jobs.models import Job, JobStatus
from tenants.models import Tenant
from webhooks.models import DeliveryStatus, WebhookDelivery

S = InstanceStatus


def _by_status(qs: QuerySet[Any], statuses: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(statuses, 0)
    for row in qs.values("status").annotate(n=Count("pk")).order_by():
        counts[row["status"]] = row["n"]
    return counts


def _scoped(qs: QuerySet[Any], tenant: Tenant | None) -> QuerySet[Any]:
    return qs.filter(tenant=tenant) if tenant is not None else qs


def _usd(value: Decimal | None) -> str:
    return usd_text(value or Decimal(0)) or "0.00"


def metrics_summary(*, tenant: Tenant | None, now: datetime | None = None) -> dict[str, Any]:
    """The summary for `tenant`; None: every tenant's (staff), with the control plane's state."""
    now = now or timezone.now()
    instances = _scoped(Instance.objects.all(), tenant)
    by_status = _by_status(instances, list(S.values))
    holding, living = Q(status__in=HOLDING_A_GPU), ~Q(status=S.TERMINATED)
    totals = instances.aggregate(
        held_n=Count("pk", filter=holding),
        held_gpus=Coalesce(Sum("gpu_num", filter=holding), 0),
        held_usd=Sum("price_per_hour", filter=holding),
        live_n=Count("pk", filter=living),
        live_gpus=Coalesce(Sum("gpu_num", filter=living), 0),
        recoveries=Coalesce(Sum("recoveries", filter=living), 0),
    )
    held = {"n": totals["held_n"], "gpus": totals["held_gpus"], "usd": totals["held_usd"]}
    live = {"n": totals["live_n"], "gpus": totals["live_gpus"], "recoveries": totals["recoveries"]}
    summary: dict[str, Any] = {
        "scope": "tenant" if tenant is not None else "all",
        "tenant": tenant.name if tenant is not None else None,
        "generated_at": timestamp_text(now),
        "instances": {
            "by_status": by_status,
            "live": live["n"],
            "gpus_live": live["gpus"],
            "holding_a_gpu": held["n"],
            "gpus_held": held["gpus"],
        },
        # price_per_hour is the offer's price for the instance's GPUs (Novita's, in USD).
        "spend": {"usd_per_hour": _usd(held["usd"]), "instances": held["n"]},
        "spot_recoveries": live["recoveries"],
        "jobs": {"by_status": _by_status(_scoped(Job.objects.all(), tenant), JobStatus.values)},
        "webhook_deliveries": {
            "by_status": _by_status(
                _scoped(WebhookDelivery.objects.all(), tenant), DeliveryStatus.values
            )
        },
    }
    if tenant is not None:
        summary["quota"] = {
            "max_instances": tenant.max_instances,
            "max_gpus": tenant.max_gpus,
            "instances": live["n"],
            "gpus": live["gpus"],
        }
    else:
        summary["control_plane"] = _control_plane()
    return summary


def _control_plane() -> dict[str, Any]:
    """The state of novitai itself, for staff: monitoring passes, Novita's circuit, catalog."""
    from catalog.services import catalog_snapshot
    from instances.monitoring import monitor_passes_count
    from novitai.novita.client import get_client

    breaker = get_client().breaker_snapshot()
    catalog = catalog_snapshot()
    return {
        "monitor_passes": monitor_passes_count(),
        "novita_circuit": breaker.state.value,
        "catalog_last_sync_at": timestamp_text(catalog.last_success_at),
    }
