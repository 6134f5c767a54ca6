"""The action task: ask Novita to start, stop, restart or delete; the monitoring pass follows the
instance until Novita confirms and then completes the job.

"Invalid state change" from Novita is never a failure by itself: the status is read again and
the job waits when the instance is already on its way; otherwise it retries later.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from instances.lifecycle import Transition, instance_event_record, instance_transition_apply
from instances.models import Instance, InstanceEvent, InstanceStatus
from instances.provisioning import instance_job_claim, retry_or_fail
from instances.services import SPOT_RECOVERY, TRANSIT_OF, Action
from jobs.selectors import Job, JobStatus
from jobs.services import job_cancel, job_fail, job_wait
from novitai.logging import log_context
from novitai.novita import errors as novita
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.types import NovitaInstanceStatus

logger = logging.getLogger(__name__)

# Upstream statuses that show an action is under way (or done).
UNDER_WAY = {
    Action.START: {
        NovitaInstanceStatus.TO_START,
        NovitaInstanceStatus.STARTING,
        NovitaInstanceStatus.PULLING,
        NovitaInstanceStatus.RUNNING,
    },
    Action.STOP: {
        NovitaInstanceStatus.TO_STOP,
        NovitaInstanceStatus.STOPPING,
        NovitaInstanceStatus.EXITED,
    },
    Action.RESTART: {NovitaInstanceStatus.TO_RESTART, NovitaInstanceStatus.RESTARTING},
}
# Where an instance goes back to when its action fails for good: the monitoring pass checks it
# again from there (health_checking becomes ready once the app answers).
REVERT_TO = {
    Action.START: InstanceStatus.STOPPED,
    Action.STOP: InstanceStatus.HEALTH_CHECKING,
    Action.RESTART: InstanceStatus.HEALTH_CHECKING,
}


def instance_action_run(*, job_id: str) -> None:
    claimed = instance_job_claim(job_id=job_id)
    if claimed is None:
        return
    job, instance = claimed
    with log_context(job_id=str(job.pk), instance_id=str(instance.pk)):
        if instance.status != TRANSIT_OF.get(job.kind):
            job_cancel(job=job, reason=f"the instance is {instance.status}")
            return
        client = get_client()
        if job.kind == Action.DELETE:
            _delete(instance, job, client)
        else:
            _act(instance, job, client)


def _revert_to(instance: Instance, job: Job) -> str:
    """A start that recovered a reclaimed spot instance goes back to preempted, not stopped."""
    if job.kind == Action.START:
        why = (
            InstanceEvent.objects.filter(instance=instance, to_status=InstanceStatus.STARTING)
            .order_by("-at", "-id")
            .values_list("reason", flat=True)
            .first()
        )
        if why == SPOT_RECOVERY:
            return InstanceStatus.PREEMPTED
    return REVERT_TO[job.kind]


def _revert(instance: Instance, job: Job, message: str) -> None:
    instance_transition_apply(
        transition=Transition(
            instance=instance,
            to_status=_revert_to(instance, job),
            reason=f"{job.kind}_failed",
            message=message,
            job_outcome=JobStatus.FAILED,
        )
    )


def _act(instance: Instance, job: Job, client: NovitaClient) -> None:
    if job.exhausted:
        _revert(
            instance, job, f"{job.kind.capitalize()} gave up after {job.max_attempts} attempts."
        )
        return
    calls = {
        Action.START: client.start_instance,
        Action.STOP: client.stop_instance,
        Action.RESTART: client.restart_instance,
    }
    novita_id = instance.novita_instance_id
    try:
        calls[job.kind](novita_id)
    except novita.InvalidStateChange:
        _reread(instance, job, client)
        return
    except novita.NotFound:
        job_wait(job=job)  # the monitoring pass sees it vanished
        return
    except (novita.RateLimited, novita.Unavailable) as exc:
        retry_or_fail(
            instance=instance,
            job=job,
            error=exc,
            what=f"{job.kind} call",
            on_exhausted=lambda message: _revert(instance, job, message),
        )
        return
    except novita.NovitaError as exc:  # capacity (start), rejected, auth: no retry
        _revert(instance, job, f"Novita refused to {job.kind} it: {exc.message}")
        return
    instance_event_record(
        instance=instance, reason=f"{job.kind}_sent", message=f"Novita accepted the {job.kind}."
    )
    job_wait(job=job)


def _reread(instance: Instance, job: Job, client: NovitaClient) -> None:
    """Novita says the action does not fit its status: see where the instance is."""
    try:
        upstream = client.get_instance(instance.novita_instance_id)
    except novita.NotFound:
        job_wait(job=job)
        return
    except novita.NovitaError as exc:
        retry_or_fail(
            instance=instance,
            job=job,
            error=exc,
            what="reading the status",
            on_exhausted=lambda message: _revert(instance, job, message),
        )
        return
    if upstream.status in UNDER_WAY[job.kind]:
        instance_event_record(
            instance=instance,
            reason=f"{job.kind}_under_way",
            message=f"Novita is already at {upstream.status}.",
        )
        job_wait(job=job)
        return
    retry_or_fail(
        instance=instance,
        job=job,
        error=novita.InvalidStateChange(f"Novita is at {upstream.status}"),
        what=f"{job.kind} not possible yet",
        on_exhausted=lambda message: _revert(instance, job, message),
    )


def _delete(instance: Instance, job: Job, client: NovitaClient) -> None:
    """Deletes what it knows of upstream; the monitoring pass confirms it gone (and finds, by
    name, a create whose outcome is not known yet) and reissues the delete if needed."""
    now = timezone.now()
    if not instance.novita_instance_id:
        if instance.create_sent_at is None:  # no create was ever sent: nothing upstream
            instance_transition_apply(
                transition=Transition(
                    instance=instance,
                    to_status=InstanceStatus.TERMINATED,
                    reason="deleted",
                    message="Nothing was created on Novita.",
                    fields={"terminated_at": now, "endpoints": []},
                    job_outcome=JobStatus.SUCCEEDED,
                )
            )
            return
        job_wait(job=job)
        return
    try:
        client.delete_instance(instance.novita_instance_id)
    except (novita.NotFound, novita.InvalidStateChange):
        pass  # gone, or already being removed: the monitoring pass confirms
    except (novita.RateLimited, novita.Unavailable) as exc:
        if job.attempts >= job.max_attempts:
            job_wait(job=job)  # the monitoring pass keeps reissuing the delete
        else:
            retry_or_fail(instance=instance, job=job, error=exc, what="delete call")
        return
    except novita.NovitaError as exc:
        logger.error("instance %s: Novita refused the delete: %s", instance.pk, exc)
        job_fail(job=job, error=f"Novita refused the delete: {exc.message}")
        return
    Instance.objects.filter(pk=instance.pk, status=InstanceStatus.TERMINATING).update(
        delete_requested_at=now
    )
    instance_event_record(
        instance=instance, reason="delete_sent", message="Novita accepted the delete."
    )
    job_wait(job=job)
