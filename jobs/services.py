"""Writes on jobs: create, claim, and every change of status — each a conditional UPDATE.

A task runs a job like this:

    job = job_claim(job_id=job_id)          # None: someone else has it, or it is not due
    if job is None: return
    ... do the work, with no transaction open across a network call ...
    job_wait(job=job) / job_complete(job=job) / job_retry_later(job=job, error=...) /
    job_defer(job=job, until=...) / job_fail(job=job, error=...)

Every change after the claim is conditional on the claim's lease token, so a task whose lease
ran out (and whose job another worker claimed since) changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Field, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.metrics import job_outcome_count
from jobs.models import ACTIVE_JOB_STATUSES, Job, JobStatus
from novitai.errors import Conflict
from novitai.outages import broker_guard
from novitai.retry import backoff_delay
from tenants.selectors import Tenant

logger = logging.getLogger(__name__)

# A wake-up sooner than this is sent with a Celery countdown; later ones wait for the sweeper.
MAX_COUNTDOWN_SECONDS = 5.0
# Longest error text kept on the row.
ERROR_MAX_LENGTH = 2000

# A retry hook gets the job and who retries it ("operator", or "staff:<user>" from the admin).
RetryHook = Callable[[Job, str], None]
_retry_hooks: dict[str, RetryHook] = {}


def job_retry_hook_register(*, task_name: str, hook: RetryHook) -> None:
    """The owner of a task says what a retry of its failed job means (it runs in the retry's
    transaction, may change its subject, and raises a ServiceError to refuse)."""
    _retry_hooks[task_name] = hook


def job_enqueue(*, job_id: uuid.UUID | str, task_name: str, countdown: float = 0.0) -> bool:
    """Wakes a worker up for the job; False when the broker did not take the message (Redis
    down: counted and logged once by novitai/outages.py). Losing it delays the job; the sweeper
    re-sends."""
    from novitai.celery import app

    options: dict[str, Any] = {}
    if countdown > 0:
        options["countdown"] = min(countdown, MAX_COUNTDOWN_SECONDS)
    return broker_guard("job", lambda: app.send_task(task_name, args=[str(job_id)], **options))


def _enqueue_on_commit(job: Job, countdown: float = 0.0) -> None:
    job_id, task_name = job.pk, job.task_name

    def enqueue() -> None:
        if not job_enqueue(job_id=job_id, task_name=task_name, countdown=countdown):
            # Not sent: due for the next sweep rather than after JOB_REDISPATCH_SECONDS.
            Job.objects.filter(pk=job_id, status=JobStatus.PENDING).update(dispatched_at=None)

    transaction.on_commit(enqueue, robust=True)


def job_create(
    *,
    kind: str,
    task_name: str,
    subject_type: str,
    subject_id: uuid.UUID,
    tenant: Tenant | None = None,
) -> Job:
    """Writes a pending job and sends its task once the surrounding transaction commits."""
    now = timezone.now()
    job = Job.objects.create(
        kind=kind,
        task_name=task_name,
        subject_type=subject_type,
        subject_id=subject_id,
        tenant=tenant,
        next_attempt_at=now,
        dispatched_at=now,
        created_at=now,
    )
    _enqueue_on_commit(job)
    return job


def job_claim(*, job_id: uuid.UUID | str) -> Job | None:
    """Takes the job for this worker: pending and due, or running with an expired lease.
    Returns the claimed job (attempts counted), or None when it is not this worker's to run."""
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        logger.warning("job_claim: malformed job id %r", job_id)
        return None
    now = timezone.now()
    token = uuid.uuid4().hex
    claimable = Q(status=JobStatus.PENDING, next_attempt_at__lte=now) | Q(
        status=JobStatus.RUNNING, lease_expires_at__lt=now
    )
    updated = Job.objects.filter(claimable, pk=job_uuid).update(
        status=JobStatus.RUNNING,
        lease_token=token,
        lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS),
        attempts=F("attempts") + 1,
        dispatched_at=None,
        started_at=Coalesce(F("started_at"), Value(now)),
        updated_at=now,
    )
    if not updated:
        return None
    return Job.objects.get(pk=job_uuid)


def _owned(job: Job) -> Q:
    """The job is still running under this worker's claim."""
    return Q(pk=job.pk, status=JobStatus.RUNNING, lease_token=job.lease_token)


def _finished_fields(status: str, error: str, now: datetime) -> dict[str, Any]:
    """What finishing a job writes (`last_error` only with an error)."""
    fields: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "updated_at": now,
        "lease_token": "",
        "lease_expires_at": None,
        "dispatched_at": None,
    }
    if error:
        fields["last_error"] = error[:ERROR_MAX_LENGTH]
    return fields


def _finished(job: Job, fields: dict[str, Any]) -> None:
    """The job in memory as finishing wrote it."""
    job.status = fields["status"]
    job.finished_at = fields["finished_at"]
    if "last_error" in fields:
        job.last_error = fields["last_error"]


def _finish(job: Job, condition: Q, status: str, error: str = "") -> bool:
    fields = _finished_fields(status, error, timezone.now())
    updated = Job.objects.filter(condition).update(**fields)
    if updated:
        _finished(job, fields)
        kind = job.kind
        transaction.on_commit(lambda: job_outcome_count(kind=kind, outcome=status))
    return bool(updated)


def _active(job: Job) -> Q:
    return Q(pk=job.pk, status__in=ACTIVE_JOB_STATUSES)


def job_complete(*, job: Job) -> bool:
    """The job's work is confirmed done (from any active status: the confirmation may arrive
    before the task has handed over)."""
    return _finish(job, _active(job), JobStatus.SUCCEEDED)


def job_fail(*, job: Job, error: str) -> bool:
    return _finish(job, _active(job), JobStatus.FAILED, error)


def job_cancel(*, job: Job, reason: str = "") -> bool:
    """The work is no longer wanted (its subject moved on: deleted, superseded)."""
    return _finish(job, _active(job), JobStatus.CANCELLED, reason)


@dataclass(frozen=True)
class JobOutcome:
    """How a job ends, for `jobs_finish`: succeeded, failed or cancelled (with an error)."""

    job: Job
    status: str
    error: str = ""


def jobs_finish(*, outcomes: Sequence[JobOutcome]) -> list[Job]:
    """`job_complete` / `job_fail` / `job_cancel` of many jobs in two statements: each job still
    active is locked, then all of them are written at once; one that is no longer active is left
    as it is, as those do. Call it inside a transaction (the locks last until its end). Returns
    the jobs finished, updated in memory; their outcomes are counted after commit."""
    by_pk = {outcome.job.pk: outcome for outcome in outcomes}
    if not by_pk:
        return []
    active = list(
        Job.objects.select_for_update()
        .filter(pk__in=list(by_pk), status__in=ACTIVE_JOB_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not active:
        return []
    now = timezone.now()
    written = {pk: _finished_fields(by_pk[pk].status, by_pk[pk].error, now) for pk in active}

    def each(name: str) -> Case:
        """The column's new value per job: one WHEN per distinct value (few: the outcomes,
        and the errors of alike transitions)."""
        jobs_by_value: dict[str, list[uuid.UUID]] = defaultdict(list)
        for pk, fields in written.items():
            if name in fields:
                jobs_by_value[fields[name]].append(pk)
        return Case(
            *(When(pk__in=pks, then=Value(value)) for value, pks in jobs_by_value.items()),
            default=F(name),
            output_field=cast(Field, Job._meta.get_field(name)),
        )

    # The columns every finished job gets alike, then its own status and error.
    update = _finished_fields(JobStatus.SUCCEEDED, "", now) | {"status": each("status")}
    if any("last_error" in fields for fields in written.values()):
        update["last_error"] = each("last_error")
    Job.objects.filter(pk__in=active).update(**update)
    finished = []
    for pk, fields in written.items():
        job = by_pk[pk].job
        _finished(job, fields)
        finished.append(job)
    counted = [(job.kind, job.status) for job in finished]

    def count() -> None:
        for kind, status in counted:
            job_outcome_count(kind=kind, outcome=status)

    transaction.on_commit(count)
    return finished


def job_wait(*, job: Job) -> bool:
    """The task did its part; the subject's owner completes the job when it is confirmed."""
    updated = Job.objects.filter(_owned(job)).update(
        status=JobStatus.WAITING,
        lease_token="",
        lease_expires_at=None,
        updated_at=timezone.now(),
    )
    if updated:
        job.status = JobStatus.WAITING
    return bool(updated)


def job_resume(*, job: Job) -> bool:
    """A waiting job runs again from its first attempt, due now, because its subject's owner
    asks (an instance waiting for capacity is tried again). No task is sent: the caller runs it
    at once, and the sweeper re-sends it after JOB_REDISPATCH_SECONDS if nobody claimed it."""
    now = timezone.now()
    updated = Job.objects.filter(pk=job.pk, status=JobStatus.WAITING).update(
        status=JobStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        dispatched_at=now,
        updated_at=now,
    )
    if updated:
        job.status, job.attempts, job.next_attempt_at = JobStatus.PENDING, 0, now
    return bool(updated)


def job_backoff_seconds(attempts: int) -> float:
    """Capped exponential backoff with full jitter, at least one base step (novitai/retry.py):
    `attempts` counts the failed one: the first retry waits one base step, the next one to two."""
    base = float(settings.JOB_RETRY_BACKOFF_BASE_SECONDS)
    cap = float(settings.JOB_RETRY_BACKOFF_CAP_SECONDS)
    return backoff_delay(attempts - 1, base=base, cap=cap, floor=base)


def _reschedule(job: Job, *, at: datetime, attempts_delta: int, error: str | None) -> bool:
    now = timezone.now()
    countdown = (at - now).total_seconds()
    soon = countdown <= MAX_COUNTDOWN_SECONDS
    fields: dict[str, Any] = {
        "status": JobStatus.PENDING,
        "next_attempt_at": at,
        "lease_token": "",
        "lease_expires_at": None,
        "dispatched_at": now if soon else None,
        "updated_at": now,
    }
    if attempts_delta:
        fields["attempts"] = F("attempts") + attempts_delta
    if error is not None:
        fields["last_error"] = error[:ERROR_MAX_LENGTH]
    updated = Job.objects.filter(_owned(job)).update(**fields)
    if not updated:
        return False
    job.status = JobStatus.PENDING
    job.next_attempt_at = at
    if soon:
        _enqueue_on_commit(job, countdown=max(0.0, countdown))
    return True


def job_retry_later(*, job: Job, error: str, retry_after: float | None = None) -> bool:
    """A retryable failure: back to pending, due after a backoff (or `retry_after`, if
    longer). The caller checks `job.attempts >= job.max_attempts` and fails it instead."""
    delay = max(job_backoff_seconds(job.attempts), retry_after or 0.0)
    logger.info("job %s retries in %.1fs: %s", job.pk, delay, error)
    return _reschedule(
        job, at=timezone.now() + timedelta(seconds=delay), attempts_delta=0, error=error
    )


def job_defer(*, job: Job, until: datetime, reason: str = "") -> bool:
    """Not a failure: the job waits for something (a grace period) and runs again at `until`.
    The claim is given back uncounted."""
    return _reschedule(job, at=until, attempts_delta=-1, error=reason or None)


@transaction.atomic
def job_retry(*, job_id: uuid.UUID, actor: str = "operator") -> Job:
    """An operator re-runs a failed or cancelled job from its first attempt; `actor` names who
    in the events its hook writes."""
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None:
        from novitai.errors import NotFound

        raise NotFound("No such job.", code="job_not_found")
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(
            f"Only a failed or cancelled job can be retried; this one is {job.status}.",
            code="job_not_retryable",
            details={"status": job.status},
        )
    hook = _retry_hooks.get(job.task_name)
    if hook is not None:
        hook(job, actor)
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        dispatched_at=now,
        finished_at=None,
        updated_at=now,
    )
    job.refresh_from_db()
    _enqueue_on_commit(job)
    logger.info("job %s (%s) retried by an operator", job.pk, job.kind)
    return job


def jobs_sweep(*, limit: int = 500) -> int:
    """Re-sends the task of every job that is due and not recently sent, and of every running
    job whose lease ran out (its worker died). Safe to run twice at once: rows are claimed for
    dispatch with SKIP LOCKED and a conditional update. Returns how many were sent."""
    now = timezone.now()
    resend_before = now - timedelta(seconds=settings.JOB_REDISPATCH_SECONDS)
    not_recently_sent = Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=resend_before)
    due = Q(status=JobStatus.PENDING, next_attempt_at__lte=now) | Q(
        status=JobStatus.RUNNING, lease_expires_at__lt=now
    )
    with transaction.atomic():
        rows = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(due & not_recently_sent)
            .order_by("next_attempt_at")
            .values_list("pk", "task_name")[:limit]
        )
        if not rows:
            return 0
        ids = [pk for pk, _ in rows]
        Job.objects.filter(pk__in=ids).filter(not_recently_sent).update(dispatched_at=now)
    unsent = [pk for pk, task_name in rows if not job_enqueue(job_id=pk, task_name=task_name)]
    if unsent:  # the broker is down: the next sweep sends them again
        Job.objects.filter(pk__in=unsent, dispatched_at=now).update(dispatched_at=None)
    logger.info("jobs sweep re-sent %d job(s)", len(rows) - len(unsent))
    return len(rows) - len(unsent)
