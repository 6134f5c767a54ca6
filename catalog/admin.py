"""Regions, products and templates as Novita last answered (read-only), the sync state, and a
"Sync from Novita now" button on the region and product lists."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from catalog.models import CatalogState, Product, Region, Template
from catalog.selectors import usd_text
from catalog.services import catalog_sync
from novitai.novita.types import price_to_usd


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows copied from Novita: looked at here, changed only by a sync."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SyncButtonAdmin(ReadOnlyAdmin):
    change_list_template = "admin/catalog/sync_button_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        urls: list[URLPattern] = super().get_urls()
        if self.model is Region:  # one route is enough; both buttons post to it
            view = self.admin_site.admin_view(require_POST(self.sync_view))
            urls.insert(0, path("sync/", view, name="catalog_sync"))
        return urls

    def sync_view(self, request: HttpRequest) -> HttpResponseRedirect:
        result = catalog_sync()
        if result.outcome == "success":
            counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.counts().items())
            self.message_user(request, f"Catalog synced: {counts}.", messages.SUCCESS)
        elif result.outcome == "skipped":
            self.message_user(request, "A sync is already running.", messages.WARNING)
        else:
            self.message_user(
                request,
                f"The sync failed; the previous catalog stays in place: {result.error}",
                messages.ERROR,
            )
        target = request.META.get("HTTP_REFERER", "")
        if not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            target = reverse("admin:catalog_product_changelist")
        return HttpResponseRedirect(target)


@admin.register(Region)
class RegionAdmin(SyncButtonAdmin):
    list_display = [
        "code",
        "name",
        "cluster_id",
        "listed",
        "supports_network_storage",
        "supports_instance_network",
        "fetched_at",
    ]
    list_filter = ["listed", "supports_network_storage"]
    search_fields = ["code", "name", "cluster_id"]


@admin.register(Product)
class ProductAdmin(SyncButtonAdmin):
    list_display = [
        "name",
        "region",
        "on_demand_usd",
        "spot_usd",
        "available",
        "inventory_state",
        "bills_on_demand",
        "bills_spot",
        "bills_monthly",
        "capacity_failed_until",
        "fetched_at",
    ]
    list_filter = [
        "region",
        "available",
        "bills_on_demand",
        "bills_spot",
        "bills_monthly",
        "inventory_state",
    ]
    search_fields = ["name", "novita_id"]
    list_select_related = ["region"]

    @admin.display(description="on demand $/GPU/h", ordering="price")
    def on_demand_usd(self, product: Product) -> str:
        return usd_text(price_to_usd(product.price))

    @admin.display(description="spot $/GPU/h", ordering="spot_price")
    def spot_usd(self, product: Product) -> str:
        return usd_text(price_to_usd(product.spot_price))


@admin.register(Template)
class TemplateAdmin(ReadOnlyAdmin):
    list_display = ["novita_id", "name", "image", "image_auth_id", "rootfs_size", "fetched_at"]
    search_fields = ["novita_id", "name", "image"]
    exclude = ["envs"]  # values may hold tokens
    readonly_fields = ["env_keys"]

    @admin.display(description="env names (values not shown)")
    def env_keys(self, template: Template) -> str:
        return ", ".join(e["key"] for e in template.envs)


@admin.register(CatalogState)
class CatalogStateAdmin(ReadOnlyAdmin):
    list_display = [
        "last_outcome",
        "last_success_at",
        "last_attempt_at",
        "last_duration_seconds",
        "version",
        "lease_expires_at",
    ]
