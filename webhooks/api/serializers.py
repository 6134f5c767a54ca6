from __future__ import annotations

from datetime import datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from webhooks.models import DeliveryAttempt, DeliveryStatus, WebhookDelivery


class WebhookDeliveryFilterSerializer(serializers.Serializer):
    """Query parameters of the delivery log."""

    instance = serializers.UUIDField(required=False, help_text="Deliveries about this instance.")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
    event_type = serializers.RegexField(
        r"^[a-z0-9_.-]{1,64}$",
        required=False,
        help_text="An event type such as instance.ready.",
        error_messages={"invalid": "Use an event type such as 'instance.ready'."},
    )


class WebhookDeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "attempted_at",
            "webhook_timestamp",
            "result",
            "status_code",
            "latency_ms",
            "error",
            "address",
            "response_excerpt",
        ]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.name", read_only=True)
    instance = serializers.UUIDField(source="instance_id", read_only=True, allow_null=True)
    next_attempt_at = serializers.SerializerMethodField(
        help_text="When the next attempt is due (pending deliveries only)."
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "tenant",
            "instance",
            "target_url",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_attempt_at(self, delivery: WebhookDelivery) -> datetime | None:
        if delivery.status != DeliveryStatus.PENDING:
            return None
        return delivery.next_attempt_at


class WebhookDeliveryDetailSerializer(WebhookDeliverySerializer):
    payload = serializers.JSONField(
        read_only=True, help_text="The body sent: type, timestamp, data."
    )
    attempt_log = WebhookDeliveryAttemptSerializer(many=True, read_only=True)

    class Meta(WebhookDeliverySerializer.Meta):
        fields = [*WebhookDeliverySerializer.Meta.fields, "payload", "attempt_log"]
        read_only_fields = fields


class WebhookSecretSerializer(serializers.Serializer):
    webhook_secret = serializers.CharField(
        read_only=True, help_text="The new signing secret. Shown once: store it now."
    )
    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Until then deliveries also carry a signature made with the previous secret.",
    )
