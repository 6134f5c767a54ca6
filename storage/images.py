"""Saving an instance as an image: Novita's save-image job (`job/save/image`), followed through
`jobs` until it succeeds, fails or is broken off (`job/break`).

    image_save_create(...)        # the request (instances checks the instance): a row, pending;
                                  # storage.image_save_start is sent after commit
    image_save_start(save_id)     # the task: asks Novita, records its job id (running)
    image_saves_follow()          # beat: sends what is pending and stale, and reads Novita's
                                  # saveImage jobs once (every page) for every running row
    image_save_cancel(...)        # job/break

An ended job writes its outcome and, in the same transaction, the webhook (instance.image_saved,
or instance.image_save_failed with Novita's message). A lost start message is re-sent by the
follow-up (a pending row older than IMAGE_SAVE_RESEND_SECONDS); a start whose answer was lost is
looked for among the instance's jobs before anything else: never two jobs.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from novitai.errors import Conflict, NotFound, ValidationFailed
from novitai.novita import errors as novita
from novitai.novita.client import get_client
from novitai.novita.types import Job, JobState
from novitai.outages import broker_guard
from storage.metrics import IMAGE_SAVES
from storage.models import ImageSave, ImageSaveStatus
from storage.selectors import image_save_representation
from tenants.selectors import Tenant
from webhooks.services import webhook_event_record

logger = logging.getLogger(__name__)

TASK_START = "storage.image_save_start"
SAVE_IMAGE = "saveImage"
# registry/namespace/name:tag (a host may have a port; lowercase path; a tag of word characters)
IMAGE_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)
REGISTRY_AUTH_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ACTIVE = (ImageSaveStatus.PENDING, ImageSaveStatus.RUNNING)
WEBHOOK_EVENTS: dict[str, str] = {
    ImageSaveStatus.SUCCEEDED: "instance.image_saved",
    ImageSaveStatus.FAILED: "instance.image_save_failed",
}


def image_reference_check(image: str, registry_auth_id: str) -> None:
    errors: dict[str, list[str]] = {}
    if len(image) > 500 or not IMAGE_RE.match(image):
        errors["image"] = ["An image reference: [registry[:port]/]name[:tag], name lowercase."]
    if registry_auth_id and not REGISTRY_AUTH_RE.match(registry_auth_id):
        errors["registry_auth_id"] = ["A registry auth id (GET /repository/auths on Novita)."]
    if errors:
        raise ValidationFailed("The image reference is not valid.", details=errors)


def image_save_create(
    *,
    tenant: Tenant,
    instance_id: uuid.UUID,
    instance_name: str,
    novita_instance_id: str,
    image: str,
    registry_auth_id: str = "",
    webhook_url: str = "",
) -> ImageSave:
    """A pending save of the instance (checked by the caller); 409 while another of its saves
    runs (Novita takes one job an instance at a time). Call inside a transaction."""
    image_reference_check(image, registry_auth_id)
    if ImageSave.objects.filter(instance_id=instance_id, status__in=ACTIVE).exists():
        raise Conflict("An image of this instance is being saved already.", code="job_running")
    save = ImageSave.objects.create(
        tenant=tenant,
        instance_id=instance_id,
        instance_name=instance_name,
        novita_instance_id=novita_instance_id,
        image=image,
        registry_auth_id=registry_auth_id,
        webhook_url=webhook_url,
    )
    transaction.on_commit(lambda: _send_start(save.pk), robust=True)
    return save


def _send_start(save_id: uuid.UUID) -> bool:
    from novitai.celery import app

    return broker_guard("job", lambda: app.send_task(TASK_START, args=[str(save_id)]))


def image_save_start(*, save_id: uuid.UUID | str) -> None:
    """Asks Novita to save; records its job id. A repeat finds the row running and stops."""
    save = ImageSave.objects.filter(pk=save_id, status=ImageSaveStatus.PENDING).first()
    if save is None or save.novita_job_id:
        return
    client = get_client()
    try:
        job_id = client.save_image(
            save.novita_instance_id,
            image=save.image,
            registry_auth_id=save.registry_auth_id or None,
        )
    except novita.UnknownOutcome:
        found = _job_of(save)
        if found is None:
            _finish(save, ImageSaveStatus.FAILED, "Novita's answer to the save was lost.")
            return
        job_id = found.id
    except (novita.RateLimited, novita.Unavailable):
        return  # still pending: the follow-up sends it again
    except novita.NovitaError as exc:
        _finish(save, ImageSaveStatus.FAILED, f"Novita refused: {exc.message}")
        return
    ImageSave.objects.filter(pk=save.pk, status=ImageSaveStatus.PENDING).update(
        status=ImageSaveStatus.RUNNING, novita_job_id=job_id, updated_at=timezone.now()
    )
    logger.info("image save %s: Novita job %s", save.pk, job_id)


def _job_of(save: ImageSave) -> Job | None:
    """A running saveImage job of the instance created since the row (a lost start's)."""
    try:
        jobs = get_client().list_jobs(
            type=SAVE_IMAGE, start_time=int(save.created_at.timestamp()) - 60
        )
    except novita.NovitaError:
        return None
    return next((j for j in jobs if j.instance_id == save.novita_instance_id and j.id), None)


def _finish(save: ImageSave, status: str, message: str = "") -> bool:
    """The outcome and its webhook, in one transaction; False when another run wrote it."""
    now = timezone.now()
    with transaction.atomic():
        done = ImageSave.objects.filter(pk=save.pk, status__in=ACTIVE).update(
            status=status, message=message, finished_at=now, updated_at=now
        )
        if not done:
            return False
        save.refresh_from_db()
        event = WEBHOOK_EVENTS.get(status)
        if event is not None and save.webhook_url:
            webhook_event_record(
                tenant=save.tenant,
                url=save.webhook_url,
                event_type=event,
                data=dict(image_save_representation(save)),
                instance_id=save.instance_id,
            )
    IMAGE_SAVES.labels(status).inc()
    logger.info("image save %s: %s %s", save.pk, status, message)
    return True


def image_saves_follow(*, now: datetime | None = None) -> int:
    """Re-sends stale pending saves and reads Novita's saveImage jobs once for every running
    one: how many ended."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.IMAGE_SAVE_RESEND_SECONDS)
    for save_id in ImageSave.objects.filter(
        status=ImageSaveStatus.PENDING, updated_at__lt=stale
    ).values_list("pk", flat=True)[:100]:
        ImageSave.objects.filter(pk=save_id).update(updated_at=now)
        _send_start(save_id)
    running = list(ImageSave.objects.filter(status=ImageSaveStatus.RUNNING).order_by("created_at"))
    if not running:
        return 0
    since = int(running[0].created_at.timestamp()) - 60
    try:
        jobs = {j.id: j for j in get_client().list_jobs(type=SAVE_IMAGE, start_time=since)}
    except novita.NovitaError as exc:
        logger.warning("image saves not followed this pass: %s", exc)
        return 0
    ended = 0
    for save in running:
        job = jobs.get(save.novita_job_id)
        if job is None or job.state in JobState.ACTIVE:
            continue
        if job.state == JobState.SUCCESS:
            ended += _finish(save, ImageSaveStatus.SUCCEEDED)
        elif job.state == JobState.BREAK:
            ended += _finish(save, ImageSaveStatus.CANCELLED, "Broken off.")
        elif job.state == JobState.FAIL:
            why = job.message or job.error or "Novita's job failed."
            ended += _finish(save, ImageSaveStatus.FAILED, why)
    return ended


def image_save_cancel(*, tenant: Tenant | None, save_id: uuid.UUID) -> ImageSave:
    """Breaks Novita's job off (job/break); 409 once it has ended, 404 for another tenant's."""
    qs = ImageSave.objects.filter(pk=save_id)
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    save = qs.first()
    if save is None:
        raise NotFound("No such image save.", code="image_save_not_found")
    if save.status not in ACTIVE:
        raise Conflict(f"The image save is {save.status}.", code="image_save_ended")
    if save.novita_job_id:
        try:
            get_client().break_job(save.novita_job_id)
        except novita.InvalidStateChange:
            image_saves_follow()  # it ended meanwhile: its outcome, not a cancel
            save.refresh_from_db()
            raise Conflict(f"The image save is {save.status}.", code="image_save_ended") from None
        except novita.NotFound:
            pass
        except novita.NovitaError as exc:
            from novitai.errors import UpstreamUnavailable

            raise UpstreamUnavailable(f"Novita could not break the job: {exc.message}") from None
    _finish(save, ImageSaveStatus.CANCELLED, "Cancelled.")
    save.refresh_from_db()
    return save
