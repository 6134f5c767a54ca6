"""Network volumes: a tenant's Novita network storage, bound to one cluster.

A volume outlives the instances that mount it (Novita bills it per GB per day until it is
deleted). Its upstream name is fixed before the create call (`<prefix>-vol-<12 hex of its id>`),
so that a create whose answer was lost can be found by name; the caller's `name` is novitai's
alone (a rename changes nothing on Novita). Sizes only grow (Novita refuses to shrink).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

MIN_SIZE_GB = 10
MAX_SIZE_GB = 10_000


class VolumeStatus(models.TextChoices):
    CREATING = "creating", "creating"  # the row claims the name; Novita is being asked
    AVAILABLE = "available", "available"
    DELETED = "deleted", "deleted"


class Volume(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="volumes")
    name = models.CharField(max_length=63)
    status = models.CharField(
        max_length=16, choices=VolumeStatus.choices, default=VolumeStatus.CREATING
    )
    region = models.CharField(max_length=64, help_text='The region code, "EU-NL-01".')
    cluster_id = models.CharField(max_length=64, help_text="Novita's cluster id (opaque).")
    size_gb = models.PositiveIntegerField()
    novita_name = models.CharField(max_length=128, unique=True, editable=False)
    novita_storage_id = models.CharField(max_length=64, blank=True, db_index=True)
    # Novita's price, USD per GB per day (None: Novita did not say).
    price_per_gb_day = models.DecimalField(max_digits=12, decimal_places=7, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=~Q(status="deleted"),
                name="volume_name_unique_live",
            ),
            models.CheckConstraint(
                condition=Q(status__in=VolumeStatus.values), name="volume_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.size_gb} GB, {self.region})"


class ImageSaveStatus(models.TextChoices):
    PENDING = "pending", "pending"  # to be asked of Novita
    RUNNING = "running", "running"  # Novita's job runs
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


class ImageSave(models.Model):
    """Saving an instance's disk as an image: Novita's save-image job, followed until it ends.

    The instance is named by id only (storage knows nothing of instances): the instances app
    checks it and hands over what the job needs."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="image_saves"
    )
    instance_id = models.UUIDField(db_index=True)
    instance_name = models.CharField(max_length=63)
    novita_instance_id = models.CharField(max_length=64)
    image = models.CharField(max_length=500)
    registry_auth_id = models.CharField(max_length=64, blank=True)
    webhook_url = models.URLField(max_length=2048, blank=True)
    status = models.CharField(
        max_length=16, choices=ImageSaveStatus.choices, default=ImageSaveStatus.PENDING
    )
    novita_job_id = models.CharField(max_length=64, blank=True, db_index=True)
    message = models.TextField(blank=True, help_text="Novita's message when it failed.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ImageSaveStatus.values), name="image_save_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.image} ({self.status})"
