"""The one way an instance changes status: a conditional UPDATE, its event, its webhook, and the
outcome of its current job — in one transaction.

    instance_transition(instance=row_as_read, to_status=..., reason=..., ...)

updates `WHERE id = … AND status = <row_as_read.status>`; when another process changed the
status first, nothing is written and it returns False (the caller re-reads or moves on).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from instances.metrics import READY_SECONDS
from instances.models import FailureReason, Instance, InstanceEvent, InstanceStatus
from instances.selectors import instance_representation
from jobs.models import JobStatus
from jobs.services import job_cancel, job_complete, job_fail
from webhooks.services import webhook_event_record

logger = logging.getLogger(__name__)

SYSTEM = "system"
JOB_PROVISION = "provision"

WEBHOOK_EVENTS: dict[str, str] = {
    InstanceStatus.READY: "instance.ready",
    InstanceStatus.FAILED: "instance.failed",
    InstanceStatus.STOPPED: "instance.stopped",
    InstanceStatus.TERMINATED: "instance.terminated",
    InstanceStatus.PREEMPTED: "instance.preempted",
}

# Statuses whose phase has a deadline, and the setting that gives it.
PHASE_TIMEOUTS: dict[str, str] = {
    InstanceStatus.STARTING: "STARTUP_TIMEOUT_SECONDS",
    InstanceStatus.RESTARTING: "STARTUP_TIMEOUT_SECONDS",
    InstanceStatus.HEALTH_CHECKING: "HEALTH_CHECK_TIMEOUT_SECONDS",
    InstanceStatus.STOPPING: "STOP_TIMEOUT_SECONDS",
    InstanceStatus.TERMINATING: "DELETE_TIMEOUT_SECONDS",
}


def phase_deadline(status: str, now: datetime) -> datetime | None:
    setting = PHASE_TIMEOUTS.get(status)
    if setting is None:
        return None
    return now + timedelta(seconds=float(getattr(settings, setting)))


def _finish_job(instance: Instance, outcome: str | None, error: str) -> None:
    job = instance.current_job
    if outcome is None or job is None:
        return
    if outcome == JobStatus.SUCCEEDED:
        job_complete(job=job)
    elif outcome == JobStatus.FAILED:
        job_fail(job=job, error=error)
    else:
        job_cancel(job=job, reason=error)


def instance_event_record(
    *,
    instance: Instance,
    reason: str,
    message: str = "",
    actor: str = SYSTEM,
    data: dict[str, Any] | None = None,
    from_status: str | None = None,
    at: datetime | None = None,
) -> InstanceEvent:
    """A step inside one status (an offer tried, a duplicate removed): from == to by default."""
    return InstanceEvent.objects.create(
        instance=instance,
        from_status=instance.status if from_status is None else from_status,
        to_status=instance.status,
        reason=reason,
        message=message,
        actor=actor,
        data=data or {},
        at=at or timezone.now(),
    )


def instance_transition(
    *,
    instance: Instance,
    to_status: str,
    reason: str,
    message: str = "",
    actor: str = SYSTEM,
    fields: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    job_outcome: str | None = None,
) -> bool:
    """Moves `instance` from the status it was read with to `to_status`. `fields` are written
    in the same UPDATE; `job_outcome` (succeeded, failed, cancelled) finishes the current job.
    Updates `instance` in memory. False, with nothing written, if the status moved meanwhile."""
    from_status = instance.status
    now = timezone.now()
    values: dict[str, Any] = {"status": to_status, "updated_at": now}
    if to_status != from_status:
        values["phase_deadline_at"] = phase_deadline(to_status, now)
    values.update(fields or {})
    with transaction.atomic():
        updated = Instance.objects.filter(pk=instance.pk, status=from_status).update(**values)
        if not updated:
            logger.info(
                "instance %s: %s -> %s skipped, its status changed meanwhile",
                instance.pk,
                from_status,
                to_status,
            )
            return False
        for name, value in values.items():
            setattr(instance, name, value)
        _finish_job(instance, job_outcome, message)
        instance_event_record(
            instance=instance,
            from_status=from_status,
            reason=reason,
            message=message,
            actor=actor,
            data=data,
            at=now,
        )
        event_type = WEBHOOK_EVENTS.get(to_status)
        if event_type and instance.webhook_url and to_status != from_status:
            webhook_event_record(
                tenant=instance.tenant,
                url=instance.webhook_url,
                event_type=event_type,
                data=instance_representation(instance),
                instance_id=instance.pk,
                occurred_at=now,
            )
    logger.info(
        "instance %s: %s -> %s (%s)",
        instance.pk,
        from_status,
        to_status,
        reason,
        extra={"instance_id": str(instance.pk)},
    )
    if to_status == InstanceStatus.READY and from_status == InstanceStatus.HEALTH_CHECKING:
        _observe_ready(instance)
    return True


def _observe_ready(instance: Instance) -> None:
    # Only provisioning counts as "request to ready" (not a start or a restart).
    job = instance.current_job
    if instance.ready_at is None or job is None or job.kind != JOB_PROVISION:
        return
    seconds = (instance.ready_at - instance.created_at).total_seconds()
    READY_SECONDS.labels(product=instance.product_name, region=instance.region).observe(seconds)


def needs_upstream_cleanup(instance: Instance) -> bool:
    """Something may exist upstream for it: an id, or a create whose outcome is unknown."""
    return bool(instance.novita_instance_id) or instance.create_sent_at is not None


def instance_fail(
    *,
    instance: Instance,
    reason: FailureReason,
    message: str,
    actor: str = SYSTEM,
    data: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> bool:
    """→ failed with a reason and a human message; its current job fails too. Whatever it has
    upstream is deleted by the monitoring pass (`released_at` stays empty until then)."""
    now = timezone.now()
    values: dict[str, Any] = {
        "failure_reason": reason,
        "failure_message": message,
        "released_at": None if needs_upstream_cleanup(instance) else now,
        "endpoints": [{**e, "healthy": False} for e in instance.endpoints],
        **(fields or {}),
    }
    return instance_transition(
        instance=instance,
        to_status=InstanceStatus.FAILED,
        reason=reason,
        message=message,
        actor=actor,
        fields=values,
        data=data,
        job_outcome=JobStatus.FAILED,
    )
