"""The ledger, budgets and drifts in the console (read-only: the ledger is written by what
novitai observes; budgets by their API)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.models import Account, Budget, BudgetAlert, Drift, Segment


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(ReadOnly):
    list_display = [
        "instance_id",
        "tenant",
        "product_name",
        "region",
        "billing_mode",
        "compute_price",
        "disk_price",
        "phase",
        "phase_since",
        "accrued_usd",
    ]
    list_filter = ["phase", "billing_mode", "tenant"]
    search_fields = ["instance_id", "novita_instance_id", "product_name"]


@admin.register(Segment)
class SegmentAdmin(ReadOnly):
    list_display = [
        "instance_id",
        "tenant",
        "phase",
        "product_name",
        "region",
        "unit_price",
        "units",
        "started_at",
        "ended_at",
    ]
    list_filter = ["phase", "tenant", "region"]
    search_fields = ["instance_id", "novita_instance_id"]


@admin.register(Drift)
class DriftAdmin(ReadOnly):
    list_display = [
        "found_at",
        "instance_id",
        "tenant",
        "novita_instance_id",
        "ledger_usd",
        "billed_usd",
        "window_start",
        "window_end",
    ]
    list_filter = ["tenant"]
    search_fields = ["instance_id", "novita_instance_id"]


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["tenant", "monthly_limit_usd", "alert_thresholds", "on_exhausted"]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnly):
    list_display = ["tenant", "month", "threshold", "spent_usd", "limit_usd", "at"]
    list_filter = ["month", "tenant"]
