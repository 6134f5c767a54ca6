"""Operators' view of instances: a list to filter (the console's numbers link here), and a page
an operator can read — the timeline with seconds, who and why; the offers tried; endpoints as
links; its jobs and webhook deliveries linked — with stop, start, restart, delete and retry, each
asking first and each through the service the API calls, as the staff user."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from billing.ledger import money_text
from instances.models import FailureReason, Instance, InstanceStatus
from instances.selectors import (
    HOLDING_A_GPU,
    LIVE_STATUSES,
    idle_stop_at,
    instance_cost_usd,
    instance_events,
    instances_failed_since,
    instances_past_deadline,
    usd_text,
)
from instances.services import (
    ACTIONS,
    SUBJECT,
    Action,
    instance_action_request,
    instance_delete_request,
    instance_retry,
)
from jobs.selectors import JobStatus, jobs_of
from novitai.console import (
    NONE,
    OperationsAdmin,
    act_on_each,
    compact_json,
    confirmation,
    confirmed,
    link,
    operate_once,
    pretty_json,
    staff_actor,
    table,
)
from webhooks.selectors import delivery_list

# Never shown: the caller's environment variables may hold tokens.
HIDDEN_FIELDS = {"envs"}
FAILURE_WINDOW = timedelta(hours=24)


def when(value: datetime | None) -> str:
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT") if value else "—"


# --- the filters the console's numbers link to ------------------------------------------------


class FailedRecentlyFilter(admin.SimpleListFilter):
    title = "failed in the last 24 h"
    parameter_name = "failed_24h"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("any", "any reason"), *FailureReason.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Instance]) -> QuerySet[Instance]:
        value = self.value()
        if value is None:
            return queryset
        since = timezone.now() - FAILURE_WINDOW
        failed = instances_failed_since(since=since, reason=None if value == "any" else value)
        return queryset.filter(pk__in=failed.values("pk"))


class _YesFilter(admin.SimpleListFilter):
    label = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", self.label)]

    def only(self, queryset: QuerySet[Instance]) -> QuerySet[Instance]:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet[Instance]) -> QuerySet[Instance]:
        return self.only(queryset) if self.value() == "yes" else queryset


class PastDeadlineFilter(_YesFilter):
    title = "phase deadline"
    parameter_name = "past_deadline"
    label = "past it (stuck)"

    def only(self, queryset: QuerySet[Instance]) -> QuerySet[Instance]:
        overdue = instances_past_deadline(now=timezone.now())
        return queryset.filter(pk__in=overdue.values("pk"))


class HoldingGpuFilter(_YesFilter):
    title = "GPU"
    parameter_name = "holding_gpu"
    label = "holding a GPU (billed)"

    def only(self, queryset: QuerySet[Instance]) -> QuerySet[Instance]:
        return queryset.filter(status__in=HOLDING_A_GPU)


class LiveFilter(_YesFilter):
    title = "live"
    parameter_name = "live"
    label = "not terminated"

    def only(self, queryset: QuerySet[Instance]) -> QuerySet[Instance]:
        return queryset.filter(status__in=LIVE_STATUSES)


# --- what an operator can do, and when --------------------------------------------------------

RETRYABLE_JOB_STATUSES = (JobStatus.FAILED, JobStatus.CANCELLED)


def _delete(instance: Instance, actor: str) -> Any:
    return instance_delete_request(instance_id=instance.pk, tenant=None, actor=actor)


def _retry(instance: Instance, actor: str) -> Any:
    return instance_retry(instance_id=instance.pk, actor=actor)


def _action(name: str) -> Callable[[Instance, str], Any]:
    def act(instance: Instance, actor: str) -> Any:
        return instance_action_request(
            instance_id=instance.pk, tenant=None, action=name, actor=actor
        )

    return act


# name -> (button, what the confirmation asks, what was done, the service call)
OPERATIONS: dict[str, tuple[str, str, str, Callable[[Instance, str], Any]]] = {
    Action.START: ("Start", "Start these instances on Novita again?", "Starting", _action("start")),
    Action.STOP: ("Stop", "Stop these instances? Their disks are kept (and billed by Novita).",
                  "Stopping", _action("stop")),
    Action.RESTART: ("Restart", "Restart these instances?", "Restarting", _action("restart")),
    Action.DELETE: ("Delete", "Delete these instances, on Novita too? This cannot be undone.",
                    "Deleting", _delete),
    "retry": ("Retry", "Retry these instances' failed job from its first attempt?", "Retried",
              _retry),
}  # fmt: skip


def available(instance: Instance) -> list[str]:
    """The operations the instance's status allows (the service still has the last word)."""
    names = [name for name, (allowed, _) in ACTIONS.items() if instance.status in allowed]
    if instance.status not in (InstanceStatus.TERMINATING, InstanceStatus.TERMINATED):
        names.append(Action.DELETE)
    job = instance.current_job
    if job is not None and job.status in RETRYABLE_JOB_STATUSES:
        names.append("retry")
    return names


@admin.register(Instance)
class InstanceAdmin(OperationsAdmin):
    list_display = [
        "name",
        "tenant",
        "status_badge",
        "failure_reason",
        "product_name",
        "region",
        "gpu_num",
        "usd_per_hour",
        "cost",
        "cost_rate",
        "billing_mode",
        "created_at",
        "ready_at",
        "last_active_at",
    ]
    list_filter = [
        "status",
        LiveFilter,
        HoldingGpuFilter,
        FailedRecentlyFilter,
        PastDeadlineFilter,
        "failure_reason",
        "region",
        "billing_mode",
        "on_preempt",
        "tenant",
    ]
    search_fields = ["=id", "name", "novita_instance_id", "novita_name"]
    ordering = ["-created_at"]
    list_select_related = ["tenant"]
    list_per_page = 50
    date_hierarchy = "created_at"
    actions = ["start_instances", "stop_instances", "restart_instances", "delete_instances",
               "retry_instances"]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["id", "name", "tenant", "status_badge", "failure", "actions_note"]}),
        ("Timeline", {"fields": ["timeline"]}),
        ("Upstream (Novita)", {"fields": [
            "novita_name", "novita_instance_id", "product_name", "novita_product_id", "region",
            "cluster_id", "usd_per_hour", "upstream_status", "upstream_seen_at", "endpoint_links",
            "offers", "phase_deadline_at", "create_sent_at", "delete_requested_at", "released_at",
        ]}),
        ("Asked for", {"fields": [
            "template_id", "product_names_json", "gpu_num", "rootfs_size", "preferred_region",
            "billing_mode", "billing_mode_requested", "spot_fallback", "max_price_per_hour",
            "health_check_json", "webhook_url",
            "on_preempt", "recoveries", "idle_timeout", "on_idle", "last_active_at",
            "idle_stop_at",
        ]}),
        ("Waiting for capacity", {"fields": [
            "capacity_wait_seconds", "waiting_since", "next_attempt_at", "capacity_attempts",
            "capacity_checked_at",
        ]}),
        ("Cost (the ledger)", {"fields": ["cost", "cost_rate", "cost_since"]}),
        ("Jobs and webhooks", {"fields": ["job_links", "delivery_links"]}),
        ("Times", {"fields": [
            "created_at", "provisioned_at", "ready_at", "stopped_at", "terminated_at",
            "updated_at",
        ]}),
    ]  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for _, options in self.fieldsets for name in options["fields"]]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Instance]:
        return super().get_queryset(request).select_related("current_job")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting is an action: it must reach Novita first

    # --- columns and read-only fields ---------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Instance) -> SafeString:
        return format_html(
            '<span class="console-status console-status-{}">{}</span>', obj.status, obj.status
        )

    @admin.display(description="$/hour", ordering="price_per_hour")
    def usd_per_hour(self, obj: Instance) -> str:
        return usd_text(obj.price_per_hour) or "—"

    @admin.display(description="cost $")
    def cost(self, obj: Instance) -> str:
        return money_text(instance_cost_usd(obj, timezone.now()))

    @admin.display(description="now $/hour", ordering="cost_rate_usd_per_hour")
    def cost_rate(self, obj: Instance) -> str:
        return money_text(obj.cost_rate_usd_per_hour)

    @admin.display(description="failure")
    def failure(self, obj: Instance) -> SafeString | str:
        if not obj.failure_reason:
            return NONE
        return format_html("<strong>{}</strong>: {}", obj.failure_reason, obj.failure_message)

    @admin.display(description="actions")
    def actions_note(self, obj: Instance) -> SafeString | str:
        names = available(obj)
        if not names:
            return "None in this status."
        return format_html(
            "{} (the buttons above; each asks first)",
            ", ".join(OPERATIONS[n][0].lower() for n in names),
        )

    @admin.display(description="events (oldest first)")
    def timeline(self, obj: Instance) -> SafeString:
        rows = [
            (
                format_html('<span class="console-when">{}</span>', when(e.at)),
                format_html("{} → <strong>{}</strong>", e.from_status or "∅", e.to_status),
                e.reason,
                e.actor,
                e.message,
                compact_json(e.data),
            )
            for e in instance_events(instance=obj)
        ]
        return table(["at", "status", "why", "who", "message", "details"], rows, "console-timeline")

    @admin.display(description="offers tried")
    def offers(self, obj: Instance) -> SafeString:
        """The offers that had no capacity, in order, then the one it was created on."""
        rows: list[tuple[Any, ...]] = [
            (o.get("product_name", ""), o.get("region", ""), o.get("price_per_hour", ""),
             o.get("outcome", ""))
            for o in obj.offers_tried or []
        ]  # fmt: skip
        if obj.novita_product_id:
            rows.append(
                (obj.product_name, obj.region, usd_text(obj.price_per_hour) or "", "created")
            )
        return table(["product", "region", "$/hour", "outcome"], rows)

    @admin.display(description="endpoints")
    def endpoint_links(self, obj: Instance) -> SafeString:
        rows = [
            (
                e.get("port"),
                e.get("type"),
                link(e["url"], e["url"]) if e.get("url") else NONE,
                {True: "healthy", False: "unhealthy"}.get(e.get("healthy"), "unchecked"),
            )
            for e in obj.endpoints or []
        ]
        return table(["port", "type", "URL", "health"], rows)

    @admin.display(description="acceptable products")
    def product_names_json(self, obj: Instance) -> SafeString:
        return pretty_json(obj.product_names)

    @admin.display(description="health check")
    def health_check_json(self, obj: Instance) -> SafeString:
        return pretty_json(obj.health_check)

    @admin.display(description="idle stop at")
    def idle_stop_at(self, obj: Instance) -> str:
        return when(idle_stop_at(obj))

    @admin.display(description="jobs")
    def job_links(self, obj: Instance) -> SafeString:
        rows = [
            (
                link(reverse("admin:jobs_job_change", args=[j.pk]), j.kind),
                j.status + (" (current)" if j.pk == obj.current_job_id else ""),
                j.attempts,
                when(j.created_at),
                j.last_error or "",
            )
            for j in jobs_of(subject_type=SUBJECT, subject_id=obj.pk)[:20]
        ]
        return table(["job", "status", "attempts", "created", "last error"], rows)

    @admin.display(description="webhook deliveries")
    def delivery_links(self, obj: Instance) -> SafeString:
        rows = [
            (
                link(reverse("admin:webhooks_webhookdelivery_change", args=[d.pk]), d.event_type),
                d.status,
                d.attempts,
                d.last_status_code or "",
                when(d.created_at),
            )
            for d in delivery_list(tenant=None, instance_id=obj.pk)[:20]
        ]
        return table(["event", "status", "attempts", "last HTTP status", "created"], rows)

    # --- actions: the list's (bulk) and the page's buttons, both asking first ------------------

    def _operate(
        self, request: HttpRequest, name: str, queryset: QuerySet[Instance]
    ) -> TemplateResponse | None:
        button, question, verb, act = OPERATIONS[name]
        if not confirmed(request):
            return confirmation(
                request,
                self,
                title=f"{button} {queryset.count()} instance(s)",
                question=question,
                objects=queryset,
                action=f"{name}_instances",
                cancel_url=reverse("admin:instances_instance_changelist"),
            )
        actor = staff_actor(request)
        act_on_each(self, request, queryset, verb, lambda i: act(i, actor))
        return None

    @admin.action(description="Start the selected instances")
    def start_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> Any:
        return self._operate(request, Action.START, queryset)

    @admin.action(description="Stop the selected instances")
    def stop_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> Any:
        return self._operate(request, Action.STOP, queryset)

    @admin.action(description="Restart the selected instances")
    def restart_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> Any:
        return self._operate(request, Action.RESTART, queryset)

    @admin.action(description="Delete the selected instances (on Novita too)")
    def delete_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> Any:
        return self._operate(request, Action.DELETE, queryset)

    @admin.action(description="Retry the selected instances' failed job")
    def retry_instances(self, request: HttpRequest, queryset: QuerySet[Instance]) -> Any:
        return self._operate(request, "retry", queryset)

    def get_urls(self) -> list[URLPattern]:
        operate = self.admin_site.admin_view(self.operate_view)
        return [
            path(
                "<uuid:object_id>/operate/<str:name>/", operate, name="instances_instance_operate"
            ),
            *super().get_urls(),
        ]

    def operate_view(self, request: HttpRequest, object_id: uuid.UUID, name: str) -> HttpResponse:
        """An object's button: GET asks, POST (confirmed) does it, back to the page."""
        if name not in OPERATIONS or not self.has_change_permission(request):
            return HttpResponse(status=404)
        instance = get_object_or_404(Instance.objects.select_related("current_job"), pk=object_id)
        button, question, verb, act = OPERATIONS[name]
        actor = staff_actor(request)
        return operate_once(
            self, request, instance, title=f"{button} {instance.name}", question=question,
            done=verb, act=lambda: act(instance, actor), label=instance.name,
            page=reverse("admin:instances_instance_change", args=[instance.pk]),
        )  # fmt: skip

    def operations(self, obj: Instance) -> list[tuple[str, str]]:
        return [
            (OPERATIONS[n][0], reverse("admin:instances_instance_operate", args=[obj.pk, n]))
            for n in available(obj)
        ]
