"""Writes on volumes. Each asks Novita in the request (a volume call is quick and has no
lifecycle to follow): the row is written first (it claims the name), then Novita is asked, then
the row records the answer; no transaction is open across the call.

A create whose answer was lost is looked up by its upstream name before anything else: found,
it is adopted; not found, the row goes and the caller is told to try again (503). A mounted
volume is never deleted: the instances that mount it are named (409). Who mounts what is the
instances app's to say: it registers a finder (`volume_mount_finder_register`), as it registers
retry hooks with jobs, so that this app knows nothing of instances.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from catalog.errors import UnknownRegion
from catalog.selectors import region_resolve
from catalog.services import catalog_ensure_fresh
from novitai.errors import Conflict, NotFound, UpstreamUnavailable, ValidationFailed
from novitai.novita import errors as novita
from novitai.novita.client import get_client
from novitai.novita.types import NetworkStorage
from storage.metrics import VOLUME_OPERATIONS
from storage.models import MAX_SIZE_GB, MIN_SIZE_GB, Volume, VolumeStatus
from storage.selectors import volume_get
from tenants.selectors import Tenant

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mount:
    """An instance that mounts a volume (what a finder answers)."""

    instance_id: str
    instance_name: str
    status: str


MountFinder = Callable[[uuid.UUID], list[Mount]]
_mount_finders: list[MountFinder] = []


def volume_mount_finder_register(*, finder: MountFinder) -> None:
    """Says which live instances mount a volume (instances registers one at start)."""
    if finder not in _mount_finders:
        _mount_finders.append(finder)


def volume_mounts(*, volume_id: uuid.UUID) -> list[Mount]:
    return [mount for finder in _mount_finders for mount in finder(volume_id)]


def novita_volume_name_for(volume_id: uuid.UUID) -> str:
    return f"{settings.NOVITA_NAME_PREFIX}-vol-{volume_id.hex[:12]}"


def _price(storage: NetworkStorage | None) -> Decimal | None:
    return storage.price_usd_per_gb_day if storage is not None else None


def _size_check(size_gb: int, *, current: int | None = None) -> None:
    if not MIN_SIZE_GB <= size_gb <= MAX_SIZE_GB:
        raise ValidationFailed(
            f"size_gb must be {MIN_SIZE_GB}-{MAX_SIZE_GB}.",
            details={"size_gb": [f"From {MIN_SIZE_GB} to {MAX_SIZE_GB} GB."]},
        )
    if current is not None and size_gb < current:
        raise ValidationFailed(
            "A volume only grows.",
            code="volume_cannot_shrink",
            details={"size_gb": [f"At least the current {current} GB: a volume only grows."]},
        )


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A volume named {name!r} exists already.",
        code="volume_name_taken",
        details={"name": [f"{name!r} is taken."]},
    )


def volume_create(*, tenant: Tenant, name: str, region: str, size_gb: int) -> Volume:
    """A volume of `size_gb` GB in the region (which must have network storage), created on
    Novita now. 400 for a bad region or size (nothing sent), 409 for a name taken, 503 when
    Novita cannot be asked."""
    _size_check(size_gb)
    catalog_ensure_fresh()
    try:
        resolved = region_resolve(region)
    except UnknownRegion as exc:
        raise ValidationFailed(exc.message, details={"region": [exc.message]}) from None
    if not resolved.supports_network_storage:
        raise ValidationFailed(
            f"{resolved.code} has no network storage.",
            code="region_without_network_storage",
            details={"region": [f"{resolved.code} has no network storage."]},
        )
    volume_id = uuid.uuid4()
    try:
        volume = Volume.objects.create(
            id=volume_id,
            tenant=tenant,
            name=name,
            region=resolved.code,
            cluster_id=resolved.cluster_id,
            size_gb=size_gb,
            novita_name=novita_volume_name_for(volume_id),
        )
    except IntegrityError:
        raise _name_taken(name) from None
    storage_id = _novita_create(volume)
    storage = _novita_read(storage_id)
    Volume.objects.filter(pk=volume.pk).update(
        status=VolumeStatus.AVAILABLE,
        novita_storage_id=storage_id,
        price_per_gb_day=_price(storage),
        updated_at=timezone.now(),
    )
    volume.refresh_from_db()
    logger.info("volume %s (%s) created on Novita as %s", volume.pk, volume.name, storage_id)
    return volume


def _novita_create(volume: Volume) -> str:
    client = get_client()
    try:
        storage_id = client.create_network_storage(
            cluster_id=volume.cluster_id, name=volume.novita_name, size_gb=volume.size_gb
        )
    except novita.UnknownOutcome:
        found = _found_by_name(volume)
        if found is None:
            _create_failed(volume, "unknown")
            raise UpstreamUnavailable(
                "Novita's answer to the volume create was lost and no volume is found under "
                "its name: try again."
            ) from None
        storage_id = found.id
    except (novita.RejectedInput, novita.QuotaExceeded) as exc:
        _create_failed(volume, "rejected")
        raise ValidationFailed(
            f"Novita refused the volume: {exc.message}", code="upstream_rejected"
        ) from None
    except novita.NovitaError as exc:
        _create_failed(volume, "error")
        raise UpstreamUnavailable(f"Novita could not create the volume: {exc.message}") from None
    VOLUME_OPERATIONS.labels("create", "done").inc()
    return storage_id


def _found_by_name(volume: Volume) -> NetworkStorage | None:
    try:
        found = get_client().list_network_storages(name=volume.novita_name)
    except novita.NovitaError:
        return None
    return next((s for s in found if s.name == volume.novita_name), None)


def _create_failed(volume: Volume, outcome: str) -> None:
    VOLUME_OPERATIONS.labels("create", outcome).inc()
    Volume.objects.filter(pk=volume.pk, status=VolumeStatus.CREATING).delete()


def _novita_read(storage_id: str) -> NetworkStorage | None:
    """The volume as Novita lists it (its price); None when it cannot be read now."""
    try:
        found = get_client().list_network_storages(storage_id=storage_id)
    except novita.NovitaError:
        logger.warning("volume %s: its price could not be read", storage_id, exc_info=True)
        return None
    return next((s for s in found if s.id == storage_id), None)


def _live(tenant: Tenant | None, volume_id: uuid.UUID) -> Volume:
    volume = volume_get(tenant=tenant, volume_id=volume_id)
    if volume is None or volume.status != VolumeStatus.AVAILABLE:
        raise NotFound("No such volume.", code="volume_not_found")
    return volume


def volume_update(
    *,
    tenant: Tenant | None,
    volume_id: uuid.UUID,
    name: str | None = None,
    size_gb: int | None = None,
) -> Volume:
    """Rename (novitai's name only) and/or grow (on Novita). 400 to shrink, 409 for a name
    taken, 404 for another tenant's."""
    volume = _live(tenant, volume_id)
    if size_gb is not None:
        _size_check(size_gb, current=volume.size_gb)
    if name is not None and name != volume.name:
        taken = Volume.objects.filter(tenant_id=volume.tenant_id, name=name).exclude(
            status=VolumeStatus.DELETED
        )
        if taken.exists():
            raise _name_taken(name)
    if size_gb is not None and size_gb != volume.size_gb:
        try:
            get_client().update_network_storage(volume.novita_storage_id, size_gb=size_gb)
        except novita.RejectedInput as exc:
            VOLUME_OPERATIONS.labels("grow", "rejected").inc()
            raise ValidationFailed(
                f"Novita refused: {exc.message}", details={"size_gb": [exc.message]}
            ) from None
        except novita.NovitaError as exc:
            VOLUME_OPERATIONS.labels("grow", "error").inc()
            raise UpstreamUnavailable(f"Novita could not grow the volume: {exc.message}") from None
        VOLUME_OPERATIONS.labels("grow", "done").inc()
        volume.size_gb = size_gb
    if name is not None:
        volume.name = name
    try:
        volume.save(update_fields=["name", "size_gb", "updated_at"])
    except IntegrityError:
        raise _name_taken(volume.name) from None
    return volume


def volume_delete(*, tenant: Tenant | None, volume_id: uuid.UUID) -> Volume:
    """Deletes the volume on Novita, then marks it deleted. 409 naming the instances while any
    mounts it (Novita's own refusal too); 404 for another tenant's."""
    volume = _live(tenant, volume_id)
    mounts = volume_mounts(volume_id=volume.pk)
    if mounts:
        raise _mounted(mounts)
    try:
        get_client().delete_network_storage(volume.novita_storage_id)
    except novita.NotFound:
        pass  # gone already
    except novita.InUse:
        VOLUME_OPERATIONS.labels("delete", "in_use").inc()
        raise Conflict(
            "Novita says an instance still holds the volume (a delete not finished yet?).",
            code="volume_in_use",
            details={"instances": []},
        ) from None
    except novita.NovitaError as exc:
        VOLUME_OPERATIONS.labels("delete", "error").inc()
        raise UpstreamUnavailable(f"Novita could not delete the volume: {exc.message}") from None
    VOLUME_OPERATIONS.labels("delete", "done").inc()
    now = timezone.now()
    Volume.objects.filter(pk=volume.pk).update(
        status=VolumeStatus.DELETED, deleted_at=now, updated_at=now
    )
    volume.refresh_from_db()
    logger.info("volume %s (%s) deleted", volume.pk, volume.name)
    return volume


def _mounted(mounts: list[Mount]) -> Conflict:
    names = ", ".join(f"{m.instance_name} ({m.status})" for m in mounts)
    return Conflict(
        f"The volume is mounted by {names}: delete those instances first.",
        code="volume_in_use",
        details={
            "instances": [
                {"id": m.instance_id, "name": m.instance_name, "status": m.status} for m in mounts
            ]
        },
    )
