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
    # Every attempt ever made (the fencing token of a claim: a result is recorded only by the
    # attempt that claimed it). `round_attempts` counts those of the current round of the retry
    # schedule; a redelivery starts a new round.
    attempts = models.PositiveIntegerField(default=0)
    round_attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due; while an attempt is in flight, when its claim expires.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # When a wake-up (a "webhooks.deliver" message) was last sent for the due attempt; null when
    # none is outstanding. The sweeper sends one for due rows without a recent one.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_due_idx"),
            models.Index(fields=["tenant", "-created_at"], name="webhook_tenant_recent_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=DeliveryStatus.values),
                name="webhook_delivery_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(round_attempts__lte=models.F("attempts")),
                name="webhook_delivery_round_within_attempts",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class AttemptResult(models.TextChoices):
    SUCCESS = "success", "success"  # 2xx
    HTTP_ERROR = "http_error", "http error"  # any other status, 3xx included
    GONE = "gone", "gone"  # 410
    TIMEOUT = "timeout", "timeout"
    CONNECTION_ERROR = "connection_error", "connection error"
    TLS_ERROR = "tls_error", "TLS error"
    DNS_ERROR = "dns_error", "DNS error"
    BLOCKED = "blocked", "blocked"  # the SSRF guard refused the target at delivery time


class DeliveryAttempt(models.Model):
    """One POST of a delivery: what happened, never what was signed with."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()  # 1, 2, … across every round of the delivery
    attempted_at = models.DateTimeField()
    # The `webhook-timestamp` header of this attempt (unix seconds): not secret, and what a
    # receiver logs, so both sides can match an attempt.
    webhook_timestamp = models.BigIntegerField()
    result = models.CharField(max_length=20, choices=AttemptResult.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    error = models.TextField(blank=True)
    # The address the connection went to (the one the SSRF guard checked); empty when none.
    address = models.CharField(max_length=64, blank=True)
    # The start of the receiver's answer, for operators (at most RESPONSE_EXCERPT_LENGTH chars).
    response_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_unique"),
            models.CheckConstraint(
                condition=models.Q(result__in=AttemptResult.values),
                name="webhook_attempt_result_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.result}"
