"""Reads on volumes, and the volume representation (the API's answer)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TypedDict

from django.db.models import QuerySet

from storage.models import ImageSave as ImageSave  # re-exported: the import rule
from storage.models import ImageSaveStatus as ImageSaveStatus
from storage.models import Volume as Volume
from storage.models import VolumeStatus as VolumeStatus
from tenants.selectors import Tenant


def volume_list(*, tenant: Tenant | None) -> QuerySet[Volume]:
    """A tenant's live volumes (every tenant's for staff: None), newest first."""
    qs = Volume.objects.exclude(status=VolumeStatus.DELETED)
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    return qs.order_by("-created_at", "-id")


def volume_get(*, tenant: Tenant | None, volume_id: uuid.UUID) -> Volume | None:
    return volume_list(tenant=tenant).filter(pk=volume_id).first()


def volumes_of_tenant(*, tenant: Tenant, volume_ids: list[uuid.UUID]) -> dict[uuid.UUID, Volume]:
    """The tenant's available volumes among `volume_ids`, by id (another tenant's are absent)."""
    rows = Volume.objects.filter(tenant=tenant, pk__in=volume_ids, status=VolumeStatus.AVAILABLE)
    return {row.pk: row for row in rows}


class VolumeRepresentation(TypedDict):
    id: str
    name: str
    status: str
    region: str
    size_gb: int
    novita_storage_id: str | None
    price_per_gb_day: str | None  # exact decimal USD
    cost_per_day: str | None  # size times price, USD
    created_at: str | None


def _usd(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def volume_representation(volume: Volume) -> VolumeRepresentation:
    price = volume.price_per_gb_day
    return {
        "id": str(volume.pk),
        "name": volume.name,
        "status": volume.status,
        "region": volume.region,
        "size_gb": volume.size_gb,
        "novita_storage_id": volume.novita_storage_id or None,
        "price_per_gb_day": _usd(price),
        "cost_per_day": _usd(price * volume.size_gb) if price is not None else None,
        "created_at": volume.created_at.isoformat().replace("+00:00", "Z"),
    }


# --- image saves ---------------------------------------------------------------------------------


class ImageSaveRepresentation(TypedDict):
    id: str
    instance_id: str
    instance_name: str
    image: str
    status: str
    novita_job_id: str | None
    message: str | None
    created_at: str | None
    finished_at: str | None


def _text(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def image_save_representation(save: ImageSave) -> ImageSaveRepresentation:
    return {
        "id": str(save.pk),
        "instance_id": str(save.instance_id),
        "instance_name": save.instance_name,
        "image": save.image,
        "status": save.status,
        "novita_job_id": save.novita_job_id or None,
        "message": save.message or None,
        "created_at": _text(save.created_at),
        "finished_at": _text(save.finished_at),
    }


def image_save_list(*, tenant: Tenant | None) -> QuerySet[ImageSave]:
    qs = ImageSave.objects.all()
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    return qs.order_by("-created_at", "-id")
