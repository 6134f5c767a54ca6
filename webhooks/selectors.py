"""Reads on webhook deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from novitai.errors import NotFound
from tenants.selectors import Tenant
from webhooks.models import DeliveryAttempt, DeliveryStatus, WebhookDelivery


def delivery_list(
    *,
    tenant: Tenant | None,
    instance_id: uuid.UUID | None = None,
    status: str | None = None,
    event_type: str | None = None,
) -> QuerySet[WebhookDelivery]:
    """Deliveries newest first: a tenant's own, or every tenant's for `tenant=None` (staff)."""
    deliveries = WebhookDelivery.objects.select_related("tenant").order_by("-created_at", "-pk")
    if tenant is not None:
        deliveries = deliveries.filter(tenant=tenant)
    if instance_id is not None:
        deliveries = deliveries.filter(instance_id=instance_id)
    if status:
        deliveries = deliveries.filter(status=status)
    if event_type:
        deliveries = deliveries.filter(event_type=event_type)
    return deliveries


def delivery_get(*, tenant: Tenant | None, delivery_id: uuid.UUID) -> WebhookDelivery:
    """One delivery the caller may see; another tenant's is not found."""
    try:
        return delivery_list(tenant=tenant).get(pk=delivery_id)
    except WebhookDelivery.DoesNotExist:
        raise NotFound("No such webhook delivery.", code="delivery_not_found") from None


def delivery_attempts(*, delivery: WebhookDelivery) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")


def delivery_counts_by_status(*, tenant: Tenant | None = None) -> dict[str, int]:
    """Deliveries by status (every status, 0 included): a tenant's, or everyone's (None)."""
    counts = {status: 0 for status in DeliveryStatus.values}
    deliveries = WebhookDelivery.objects.all()
    if tenant is not None:
        deliveries = deliveries.filter(tenant=tenant)
    rows = deliveries.order_by().values("status").annotate(n=Count("pk"))
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def delivery_due_count() -> int:
    return WebhookDelivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
    ).count()


def delivery_oldest_due_at(*, now: datetime) -> datetime | None:
    """When the longest-waiting due delivery became due; None when none is due. A claimed one
    is not due: its claim pushed `next_attempt_at` out by its lease."""
    return WebhookDelivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).aggregate(oldest=Min("next_attempt_at"))["oldest"]


def delivery_failing_endpoints(*, since: datetime, limit: int = 10) -> list[dict[str, Any]]:
    """Receivers whose deliveries created since then failed (the schedule ran out) or are being
    retried after a failed attempt, the most failing first: {target_url, failed, retrying,
    last_status_code, last_error, tenant}."""
    failing = WebhookDelivery.objects.filter(created_at__gte=since).filter(
        Q(status=DeliveryStatus.FAILED) | Q(status=DeliveryStatus.PENDING, attempts__gt=0)
    )
    rows = (
        failing.order_by()
        .values("target_url")
        .annotate(
            failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
            retrying=Count("pk", filter=Q(status=DeliveryStatus.PENDING)),
            latest=Max("created_at"),
        )
        .order_by("-failed", "-retrying", "target_url")[:limit]
    )
    endpoints = []
    for row in rows:
        last = (
            failing.filter(target_url=row["target_url"])
            .select_related("tenant")
            .order_by("-created_at", "-pk")
            .first()
        )
        endpoints.append(
            {
                "target_url": row["target_url"],
                "failed": row["failed"],
                "retrying": row["retrying"],
                "last_status_code": last.last_status_code if last else None,
                "last_error": last.last_error if last else "",
                "tenant": last.tenant.name if last else "",
            }
        )
    return endpoints
