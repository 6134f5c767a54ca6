"""Reads on webhook deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Count, Min, QuerySet
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
