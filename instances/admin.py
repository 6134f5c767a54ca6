"""Operators' view of instances: filters, the event history inline, stop / delete / retry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from instances.models import Instance, InstanceEvent
from instances.selectors import idle_stop_at
from instances.services import (
    Action,
    instance_action_request,
    instance_delete_request,
    instance_retry,
)
from novitai.errors import ServiceError

# Never shown: the caller's environment variables may hold tokens.
HIDDEN_FIELDS = {"envs"}


class InstanceEventInline(admin.TabularInline):
    model = InstanceEvent
    extra = 0
    can_delete = False
    ordering = ["at", "id"]
    fields = ("at", "from_status", "to_status", "reason", "message", "actor", "data")
    readonly_fields = ("at", "from_status", "to_status", "reason", "message", "actor", "data")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "tenant",
        "status",
        "failure_reason",
        "product_name",
        "region",
        "gpu_num",
        "price_per_hour",
        "created_at",
        "ready_at",
        "idle_timeout",
        "last_active_at",
    ]
    list_filter = ["status", "region", "tenant", "failure_reason", "billing_mode", "on_preempt"]
    search_fields = ["=id", "name", "novita_instance_id", "novita_name"]
    ordering = ["-created_at"]
    list_select_related = ["tenant"]
    inlines = [InstanceEventInline]
    actions = ["stop_instances", "delete_instances", "retry_instances"]
    exclude = sorted(HIDDEN_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [
            f.name
            for f in Instance._meta.get_fields()
            if f.concrete and f.name not in HIDDEN_FIELDS
        ] + ["idle_stop_at"]

    @admin.display(description="idle stop at")
    def idle_stop_at(self, obj: Instance) -> datetime | None:
        return idle_stop_at(obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting is an action: it must reach Novita first

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Instance],
        verb: str,
        act: Callable[[Instance, str], Any],
    ) -> None:
        actor = f"staff:{request.user.get_username()}"
        done = 0
        for instance in queryset:
            try:
                act(instance, actor)
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{instance.name}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{verb} {done} instance(s).", messages.SUCCESS)

    @admin.action(description="Stop the selected instances")
    def stop_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._each(
            request,
            queryset,
            "Stopping",
            lambda i, actor: instance_action_request(
                instance_id=i.pk, tenant=None, action=Action.STOP, actor=actor
            ),
        )

    @admin.action(description="Delete the selected instances (on Novita too)")
    def delete_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._each(
            request,
            queryset,
            "Deleting",
            lambda i, actor: instance_delete_request(instance_id=i.pk, tenant=None, actor=actor),
        )

    @admin.action(description="Retry the selected instances' failed job")
    def retry_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._each(request, queryset, "Retried", lambda i, actor: instance_retry(instance_id=i.pk))
