"""Network volumes on instances: where a create that mounts volumes may go, and which instances
mount a volume (the finder storage asks before a delete).

A create body's `volumes: [{volume_id, mount_path}]` names the tenant's own available volumes,
all in one cluster; the instance is then offered only that cluster's products, and the create
sends them as Novita's `networkStorages`. A requested region other than the volumes' is a 400
naming `volumes`: nothing is created, nothing sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from instances.models import Instance, InstanceStatus
from novitai.errors import ValidationFailed
from storage.selectors import volumes_of_tenant
from storage.services import Mount, volume_mount_finder_register
from tenants.selectors import Tenant


@dataclass(frozen=True)
class Placement:
    """The volumes' mounts as stored on the instance, their cluster and region."""

    mounts: tuple[dict[str, str], ...] = ()
    cluster_id: str | None = None
    region_code: str = ""


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(message, code="invalid_volumes", details={"volumes": [message]})


def volumes_placement(
    *, tenant: Tenant, volumes: tuple[tuple[uuid.UUID, str], ...], region_code: str
) -> Placement:
    """The mounts of `volumes` (the tenant's own, available), their one cluster; 400 naming
    `volumes` for one the tenant does not have, volumes of two clusters, or a region asked for
    that is not theirs."""
    found = volumes_of_tenant(tenant=tenant, volume_ids=[volume_id for volume_id, _ in volumes])
    missing = [str(volume_id) for volume_id, _ in volumes if volume_id not in found]
    if missing:
        raise _invalid(f"No such volume: {', '.join(missing)}.")
    regions = sorted({found[volume_id].region for volume_id, _ in volumes})
    if len(regions) > 1:
        raise _invalid(f"The volumes are in different regions ({', '.join(regions)}).")
    first = found[volumes[0][0]]
    if region_code and region_code != first.region:
        raise _invalid(
            f"Volume {first.name} is in {first.region}, not in the requested region "
            f"{region_code}: leave region out, or ask for {first.region}."
        )
    mounts = tuple(
        {
            "volume_id": str(volume_id),
            "name": found[volume_id].name,
            "mount_path": mount_path,
            "novita_storage_id": found[volume_id].novita_storage_id,
            "cluster_id": found[volume_id].cluster_id,
        }
        for volume_id, mount_path in volumes
    )
    return Placement(mounts=mounts, cluster_id=first.cluster_id, region_code=first.region)


def instances_mounting(volume_id: uuid.UUID) -> list[Mount]:
    """Instances that mount the volume and may still hold it on Novita: every one not
    terminated (a failed one until Novita confirmed its delete)."""
    rows = (
        Instance.objects.exclude(status=InstanceStatus.TERMINATED)
        .exclude(status=InstanceStatus.FAILED, released_at__isnull=False)
        .exclude(volumes=[])
        .only("id", "name", "status", "volumes")
        .order_by("created_at", "id")
    )
    wanted = str(volume_id)
    return [
        Mount(instance_id=str(row.pk), instance_name=row.name, status=row.status)
        for row in rows
        if any(mount.get("volume_id") == wanted for mount in row.volumes)
    ]


def mount_finder_register() -> None:
    volume_mount_finder_register(finder=instances_mounting)
