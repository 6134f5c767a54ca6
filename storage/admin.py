from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from storage.models import ImageSave, Volume


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown as they are: changes go through the API (each asks Novita)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Volume)
class VolumeAdmin(ReadOnlyAdmin):
    """Volumes as they are; changes go through the API (each asks Novita)."""

    list_display = (
        "name",
        "tenant",
        "status",
        "region",
        "size_gb",
        "price_per_gb_day",
        "novita_storage_id",
        "created_at",
    )
    list_filter = ("status", "region")
    search_fields = ("name", "novita_storage_id", "novita_name", "tenant__name")
    ordering = ["-created_at"]
    readonly_fields = [f.name for f in Volume._meta.fields]


@admin.register(ImageSave)
class ImageSaveAdmin(ReadOnlyAdmin):
    """Image saves and how they ended (Novita's message when they failed)."""

    list_display = (
        "image",
        "instance_name",
        "tenant",
        "status",
        "novita_job_id",
        "created_at",
        "finished_at",
    )
    list_filter = ("status",)
    search_fields = ("image", "instance_name", "novita_job_id", "tenant__name")
    ordering = ["-created_at"]
    readonly_fields = [f.name for f in ImageSave._meta.fields]
