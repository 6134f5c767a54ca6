from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from novitai.errors import Conflict
from webhooks.models import DeliveryAttempt, WebhookDelivery
from webhooks.services import webhook_redeliver

_ATTEMPT_FIELDS: tuple[str, ...] = (
    "number",
    "attempted_at",
    "result",
    "status_code",
    "latency_ms",
    "address",
    "error",
    "response_excerpt",
)

_DELIVERY_FIELDS: tuple[str, ...] = (
    "id",
    "event_id",
    "event_type",
    "tenant",
    "instance_id",
    "target_url",
    "status",
    "attempts",
    "round_attempts",
    "next_attempt_at",
    "dispatched_at",
    "last_status_code",
    "last_error",
    "created_at",
    "delivered_at",
    "payload",
)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = _ATTEMPT_FIELDS
    readonly_fields = _ATTEMPT_FIELDS
    ordering = ["number"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "event_id",
        "event_type",
        "tenant",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "event_type", "tenant"]
    search_fields = ["event_id", "=instance_id", "target_url"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]
    fields = _DELIVERY_FIELDS
    readonly_fields = _DELIVERY_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Redeliver (same webhook-id, fresh signature)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent, pending = 0, 0
        for delivery in queryset:
            try:
                webhook_redeliver(delivery=delivery)
                sent += 1
            except Conflict:
                pending += 1
        if sent:
            self.message_user(request, f"Redelivering {sent} delivery(ies).", messages.SUCCESS)
        if pending:
            self.message_user(
                request, f"Skipped {pending} still pending: already scheduled.", messages.WARNING
            )
