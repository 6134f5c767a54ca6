from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from tenants.models import Tenant, TenantAPIKey
from tenants.services import tenant_api_key_create, tenant_webhook_secret_rotate

# One place for API keys: the library's own model (unused: keys belong to tenants) is not shown.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "max_instances", "max_gpus", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["id", "created_at", "previous_webhook_secret_expires_at"]
    fields = [
        "id",
        "name",
        "is_active",
        "max_instances",
        "max_gpus",
        "previous_webhook_secret_expires_at",
        "created_at",
    ]
    actions = ["create_api_key", "rotate_webhook_secret"]

    @admin.action(description="Create an API key (shown once)")
    def create_api_key(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            key = tenant_api_key_create(tenant=tenant, name=f"{tenant.name}-admin")
            self.message_user(
                request,
                f"New API key for {tenant.name} (copy it now, it is not stored): {key}",
                messages.WARNING,
            )

    @admin.action(description="Rotate the webhook signing secret")
    def rotate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            tenant_webhook_secret_rotate(tenant=tenant)
        self.message_user(request, f"Rotated {queryset.count()} secret(s).", messages.SUCCESS)


@admin.register(TenantAPIKey)
class TenantAPIKeyAdmin(APIKeyModelAdmin):
    list_display = (  # type: ignore[assignment]
        "prefix",
        "name",
        "tenant",
        "created",
        "expires_at",
        "last_used_at",
        "revoked",
    )
    list_filter = ("created", "revoked", "tenant")  # type: ignore[assignment]
    search_fields = (*APIKeyModelAdmin.search_fields, "tenant__name")  # type: ignore[assignment]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The library's names `expiry_date` (ours: expires_at); a revoked key cannot change.
        if obj is not None and obj.revoked:
            return ("prefix", "last_used_at", "name", "tenant", "revoked", "expires_at")
        return ("prefix", "last_used_at")
