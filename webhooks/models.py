"""Webhook deliveries: the outbox rows written in the same transaction as the state change."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    DELIVERED = "delivered", "delivered"
    FAILED = "failed", "failed"  # the retry schedule ran out
    GONE = "gone", "gone"  # the receiver answered 410: no further attempts


class WebhookDelivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    # Standard Webhooks `webhook-id`: one per event, the same across every retry of it.
    event_id = models.CharField(max_length=64, unique=True, editable=False)
    event_type = models.CharField(max_length=64, db_index=True)
    target_url = models.URLField(max_length=2048)
    # The instance the event is about, as a plain reference (webhooks know nothing of instances).
    instance_id = models.UUIDField(null=True, blank=True, db_index=True)
    # The exact body sent: {"type", "timestamp", "data"}.
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"
