"""Webhook deliveries: the log of every attempt, the exact body sent (pretty), the instance it is
about, and redelivery (same webhook-id, fresh signature) that asks first."""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString

from novitai.console import (
    NONE,
    OperationsAdmin,
    act_on_each,
    confirmation,
    confirmed,
    link,
    operate_once,
    pretty_json,
)
from webhooks.models import DeliveryAttempt, DeliveryStatus, WebhookDelivery
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
    "instance_link",
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
    "payload_json",
)
REDELIVERABLE = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.GONE)
QUESTION = "Send these deliveries again now, with the same webhook-id and a fresh signature?"


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
class WebhookDeliveryAdmin(OperationsAdmin):
    list_display = [
        "event_type",
        "tenant",
        "status",
        "attempts",
        "last_status_code",
        "target_url",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "event_id",
    ]
    list_filter = ["status", "event_type", "last_status_code", "tenant"]
    search_fields = ["event_id", "=instance_id", "target_url"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]
    fields = _DELIVERY_FIELDS
    readonly_fields = _DELIVERY_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="payload (the exact body sent)")
    def payload_json(self, obj: WebhookDelivery) -> SafeString:
        return pretty_json(obj.payload)

    @admin.display(description="instance")
    def instance_link(self, obj: WebhookDelivery) -> SafeString:
        if obj.instance_id is None:
            return NONE
        url = reverse("admin:instances_instance_change", args=[obj.instance_id])
        return link(url, obj.instance_id)

    @admin.action(description="Redeliver (same webhook-id, fresh signature)")
    def redeliver(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]
    ) -> TemplateResponse | None:
        if not confirmed(request):
            return confirmation(
                request,
                self,
                title=f"Redeliver {queryset.count()} delivery(ies)",
                question=QUESTION,
                objects=queryset,
                action="redeliver",
                cancel_url=reverse("admin:webhooks_webhookdelivery_changelist"),
            )
        act_on_each(
            self, request, queryset, "Redelivering", lambda d: webhook_redeliver(delivery=d)
        )
        return None

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.redeliver_view)
        return [
            path("<uuid:object_id>/redeliver/", view, name="webhooks_webhookdelivery_redeliver"),
            *super().get_urls(),
        ]

    def redeliver_view(self, request: HttpRequest, object_id: uuid.UUID) -> HttpResponse:
        """The page's button: GET asks, POST (confirmed) redelivers, back to the page."""
        if not self.has_change_permission(request):
            return HttpResponse(status=404)
        delivery = get_object_or_404(WebhookDelivery, pk=object_id)
        return operate_once(
            self, request, delivery, title=f"Redeliver {delivery}", question=QUESTION,
            done="Redelivering", act=lambda: webhook_redeliver(delivery=delivery),
            page=reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]),
        )  # fmt: skip

    def operations(self, obj: WebhookDelivery) -> list[tuple[str, str]]:
        if obj.status not in REDELIVERABLE:
            return []
        return [("Redeliver", reverse("admin:webhooks_webhookdelivery_redeliver", args=[obj.pk]))]
