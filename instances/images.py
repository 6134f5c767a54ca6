"""Save an instance as an image (POST /api/v1/instances/{id}/save-image/): the instance is
checked here (the tenant's own, ready or stopped: Novita saves a running or exited instance),
the job itself is storage's (storage/images.py), and the request is an event on the instance."""

from __future__ import annotations

import uuid

from django.db import transaction

from instances.lifecycle import instance_event_record
from instances.models import Instance, InstanceStatus
from novitai.errors import Conflict, NotFound
from storage.images import image_save_create
from storage.selectors import ImageSave
from tenants.selectors import Tenant

SAVABLE = (InstanceStatus.READY, InstanceStatus.STOPPED)


def instance_image_save_request(
    *, tenant: Tenant, instance_id: uuid.UUID, image: str, registry_auth_id: str, actor: str
) -> ImageSave:
    """A tracked save of the tenant's instance as `image` (202): 404 for another tenant's, 409
    unless it is ready or stopped or while another save of it runs, 400 for a bad reference."""
    with transaction.atomic():
        instance = (
            Instance.objects.select_for_update().filter(pk=instance_id, tenant=tenant).first()
        )
        if instance is None:
            raise NotFound("No such instance.", code="instance_not_found")
        if instance.status not in SAVABLE or not instance.novita_instance_id:
            raise Conflict(
                f"Cannot save an image of an instance that is {instance.status}.",
                code="invalid_instance_state",
                details={"status": instance.status, "allowed_from": list(SAVABLE)},
            )
        save = image_save_create(
            tenant=tenant,
            instance_id=instance.pk,
            instance_name=instance.name,
            novita_instance_id=instance.novita_instance_id,
            image=image,
            registry_auth_id=registry_auth_id,
            webhook_url=instance.webhook_url,
        )
        instance_event_record(
            instance=instance,
            reason="image_save_requested",
            message=f"Saving the instance as {image}.",
            actor=actor,
            data={"image_save_id": str(save.pk), "image": image},
        )
    return save
