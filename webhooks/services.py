"""Writes on webhook deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from tenants.models import Tenant
from webhooks.models import WebhookDelivery


def webhook_event_record(
    *,
    tenant: Tenant,
    url: str,
    event_type: str,
    data: dict[str, Any],
    instance_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> WebhookDelivery:
    """Records an event for delivery. Call it inside the transaction of the state change that
    caused it: the row is the outbox. Delivery is attempted after commit and re-driven by the
    sweeper if that wake-up is lost."""
    occurred_at = occurred_at or timezone.now()
    delivery = WebhookDelivery.objects.create(
        tenant=tenant,
        event_id=f"msg_{uuid.uuid4().hex}",
        event_type=event_type,
        target_url=url,
        instance_id=instance_id,
        payload={
            "type": event_type,
            "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
            "data": data,
        },
        next_attempt_at=occurred_at,
    )
    transaction.on_commit(lambda: _enqueue_delivery(delivery.pk), robust=True)
    return delivery


def _enqueue_delivery(delivery_id: uuid.UUID) -> None:
    """Wakes a worker up to deliver now (the webhooks issue adds the task; the sweeper is the
    guarantee)."""
    from celery import current_app

    if "webhooks.deliver" in current_app.tasks:
        current_app.send_task("webhooks.deliver", args=[str(delivery_id)])
