"""The one way an instance changes status: a conditional UPDATE, its event, its webhook, and the
outcome of its current job — in one transaction.

A `Transition` says what the change is (`Transition(instance=row_as_read, to_status=..., ...)`,
or `Transition.to_failed(...)`); applying it is the one verb that writes:

    instance_transition_apply(transition=Transition(instance=row_as_read, to_status=..., ...))

updates `WHERE id = … AND status = <row_as_read.status>`; when another process changed the
status first, nothing is written and it returns False (the caller re-reads or moves on).

    instance_transitions_apply(transitions=[Transition(instance=row_as_read, ...), ...])

does the same for many instances (the monitoring pass) in one transaction and a number of
statements that does not grow with them: the rows are locked first (SELECT … FOR UPDATE; on
SQLite the IMMEDIATE transaction already holds the write lock), those whose status moved
meanwhile are skipped exactly as the single conditional UPDATE skips them (no event, no webhook, no
job change), and the others are written by conditional bulk UPDATEs, their events, webhook
deliveries and job outcomes by bulk statements. Both paths build what a transition writes with
the same code (`Transition.values`, `_records`, `_job_outcome`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from instances.bulk import rows_update
from instances.ledger import ledger_close
from instances.metrics import READY_SECONDS
from instances.models import FailureReason, Instance, InstanceEvent, InstanceStatus
from instances.selectors import instance_representation
from jobs.selectors import JobStatus
from jobs.services import JobOutcome, job_cancel, job_complete, job_fail, jobs_finish
from webhooks.services import WebhookEvent, webhook_events_record

logger = logging.getLogger(__name__)

SYSTEM = "system"
JOB_PROVISION = "provision"

WEBHOOK_EVENTS: dict[str, str] = {
    InstanceStatus.READY: "instance.ready",
    InstanceStatus.FAILED: "instance.failed",
    InstanceStatus.STOPPED: "instance.stopped",
    InstanceStatus.TERMINATED: "instance.terminated",
    InstanceStatus.PREEMPTED: "instance.preempted",
    InstanceStatus.WAITING_FOR_CAPACITY: "instance.waiting_for_capacity",
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


class TransitionRaced(RuntimeError):
    """A batch's conditional UPDATE missed a row it had locked: the lock did not hold (it
    cannot under Postgres's row locks or SQLite's IMMEDIATE transactions). Nothing of the batch
    is written; its transitions are judged again later."""


@dataclass
class Transition:
    """A change of status as asked for; `from_status` is the status the instance was read with.
    `fields` are written with the status; `job_outcome` (succeeded, failed, cancelled) finishes
    the current job; `notify` False sends no webhook (an instance waiting for capacity again
    after another attempt: its webhook went once)."""

    instance: Instance
    to_status: str
    reason: str
    message: str = ""
    actor: str = SYSTEM
    fields: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | None = None
    job_outcome: str | None = None
    notify: bool = True
    from_status: str = field(init=False)

    def __post_init__(self) -> None:
        self.from_status = self.instance.status

    @classmethod
    def to_failed(
        cls,
        *,
        instance: Instance,
        reason: FailureReason,
        message: str,
        actor: str = SYSTEM,
        data: dict[str, Any] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Transition:
        """→ failed with a reason and a human message; its current job fails too. Whatever it
        has upstream is deleted by the monitoring pass (`released_at` stays empty until then)."""
        values: dict[str, Any] = {
            "failure_reason": reason,
            "failure_message": message,
            "released_at": None if needs_upstream_cleanup(instance) else timezone.now(),
            "endpoints": [{**e, "healthy": False} for e in instance.endpoints],
            **(fields or {}),
        }
        return cls(
            instance=instance,
            to_status=InstanceStatus.FAILED,
            reason=reason,
            message=message,
            actor=actor,
            fields=values,
            data=data,
            job_outcome=JobStatus.FAILED,
        )

    def values(self, now: datetime) -> dict[str, Any]:
        """The columns it writes. Terminated: the caller's env values go (the record stays)."""
        values: dict[str, Any] = {"status": self.to_status, "updated_at": now}
        if self.to_status != self.from_status:
            values["phase_deadline_at"] = phase_deadline(self.to_status, now)
        if self.to_status == InstanceStatus.TERMINATED:
            values["envs"] = []
        values.update(self.fields)
        return values


def _job_outcome(transition: Transition) -> JobOutcome | None:
    job = transition.instance.current_job
    if transition.job_outcome is None or job is None:
        return None
    error = "" if transition.job_outcome == JobStatus.SUCCEEDED else transition.message
    return JobOutcome(job=job, status=transition.job_outcome, error=error)


def _finish_job(transition: Transition) -> None:
    outcome = _job_outcome(transition)
    if outcome is None:
        return
    if outcome.status == JobStatus.SUCCEEDED:
        job_complete(job=outcome.job)
    elif outcome.status == JobStatus.FAILED:
        job_fail(job=outcome.job, error=outcome.error)
    else:
        job_cancel(job=outcome.job, reason=outcome.error)


def _set(instance: Instance, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(instance, name, value)


def _records(transition: Transition, now: datetime) -> tuple[InstanceEvent, WebhookEvent | None]:
    """Its event and, when notifiable, its webhook event (both unsaved), from the instance (and
    its job) as written: call it once both are."""
    instance = transition.instance
    event = instance_event_build(
        instance=instance,
        from_status=transition.from_status,
        reason=transition.reason,
        message=transition.message,
        actor=transition.actor,
        data=transition.data,
        at=now,
    )
    event_type = WEBHOOK_EVENTS.get(transition.to_status)
    changed = transition.to_status != transition.from_status
    if not (event_type and instance.webhook_url and changed and transition.notify):
        return event, None
    return event, WebhookEvent(
        tenant=instance.tenant,
        url=instance.webhook_url,
        event_type=event_type,
        data=instance_representation(instance),
        instance_id=instance.pk,
        occurred_at=now,
    )


def _skipped(transition: Transition) -> None:
    logger.info(
        "instance %s: %s -> %s skipped, its status changed meanwhile",
        transition.instance.pk,
        transition.from_status,
        transition.to_status,
    )


def _done(transition: Transition) -> None:
    """After commit: its log line and, for a provisioned instance now ready, its metric."""
    instance = transition.instance
    logger.info(
        "instance %s: %s -> %s (%s)",
        instance.pk,
        transition.from_status,
        transition.to_status,
        transition.reason,
        extra={"instance_id": str(instance.pk)},
    )
    if (
        transition.to_status == InstanceStatus.READY
        and transition.from_status == InstanceStatus.HEALTH_CHECKING
    ):
        _observe_ready(instance)


def instance_event_build(
    *,
    instance: Instance,
    reason: str,
    message: str = "",
    actor: str = SYSTEM,
    data: dict[str, Any] | None = None,
    from_status: str | None = None,
    at: datetime | None = None,
) -> InstanceEvent:
    """An event, unsaved (see `instance_event_record`; bulk writers save many at once)."""
    return InstanceEvent(
        instance=instance,
        from_status=instance.status if from_status is None else from_status,
        to_status=instance.status,
        reason=reason,
        message=message,
        actor=actor,
        data=data or {},
        at=at or timezone.now(),
    )


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
    event = instance_event_build(
        instance=instance,
        reason=reason,
        message=message,
        actor=actor,
        data=data,
        from_status=from_status,
        at=at,
    )
    event.save(force_insert=True)
    return event


def instance_transition_apply(*, transition: Transition) -> bool:
    """Moves the transition's instance from the status it was read with to `to_status`: one
    conditional UPDATE (with `fields`), its event, its webhook and its job's outcome, in one
    transaction. Updates the instance in memory. False, with nothing written, if the status
    moved meanwhile."""
    instance = transition.instance
    now = timezone.now()
    values = transition.values(now)
    with transaction.atomic():
        updated = Instance.objects.filter(pk=instance.pk, status=transition.from_status).update(
            **values
        )
        if not updated:
            _skipped(transition)
            return False
        _set(instance, values)
        _finish_job(transition)
        _ledger_end([transition], now)
        event, webhook = _records(transition, now)
        event.save(force_insert=True)
        if webhook is not None:
            webhook_events_record(events=[webhook])
    _done(transition)
    return True


def instance_transitions_apply(*, transitions: Sequence[Transition]) -> list[Transition]:
    """Many transitions (one per instance) in one transaction: returns those that happened,
    their instances (and jobs) updated in memory. A transition whose instance's status moved
    since it was read is skipped with nothing written for it, as `instance_transition_apply` skips
    it.
    Statements: a lock, one conditional UPDATE per kind of transition (same from status, same
    columns; `rows_update`), the job outcomes (two), the events (one) and the webhook
    deliveries (one, and one on-commit wake-up) — bulk statements split further only by the
    database's limit on query parameters (SQLite)."""
    by_pk = {t.instance.pk: t for t in transitions}
    if len(by_pk) != len(transitions):
        raise ValueError("A batch holds at most one transition per instance.")
    if not by_pk:
        return []
    now = timezone.now()
    with transaction.atomic():
        # Locked in id order (two batches never wait on each other in a cycle); a row locked
        # here is the one written below: another writer waits for this transaction, and its own
        # conditional UPDATE then finds the new status.
        current = dict(
            Instance.objects.select_for_update()
            .filter(pk__in=list(by_pk))
            .order_by("pk")
            .values_list("pk", "status")
        )
        moved: list[Transition] = []
        for t in transitions:
            if current.get(t.instance.pk) == t.from_status:
                moved.append(t)
            else:
                _skipped(t)
        groups: dict[tuple[str, tuple[str, ...]], list[tuple[Transition, dict[str, Any]]]]
        groups = defaultdict(list)
        for t in moved:
            values = t.values(now)
            groups[(t.from_status, tuple(sorted(values)))].append((t, values))
        for (from_status, _), members in groups.items():
            # Still conditional on the status read: under the lock it writes every row.
            written = rows_update(
                Instance.objects.filter(status=from_status),
                {t.instance.pk: values for t, values in members},
            )
            if written != len(members):
                raise TransitionRaced(
                    f"{len(members) - written} of {len(members)} locked instance(s) were no "
                    f"longer {from_status}; the batch is rolled back"
                )
            for t, values in members:
                _set(t.instance, values)
        jobs_finish(outcomes=[o for o in map(_job_outcome, moved) if o is not None])
        _ledger_end(moved, now)
        records = [_records(t, now) for t in moved]
        InstanceEvent.objects.bulk_create([event for event, _ in records])
        webhook_events_record(events=[hook for _, hook in records if hook is not None])
    for t in moved:
        _done(t)
    return moved


def _ledger_end(transitions: Sequence[Transition], now: datetime) -> None:
    """Terminated instances bill nothing more (before their webhook: it shows the final cost)."""
    ended = [t.instance for t in transitions if t.to_status == InstanceStatus.TERMINATED]
    if ended:
        ledger_close(ended, at=now)


def _observe_ready(instance: Instance) -> None:
    # Only provisioning counts as "request to ready" (not a start or a restart).
    job = instance.current_job
    if instance.ready_at is None or job is None or job.kind != JOB_PROVISION:
        return
    if instance.recoveries:  # provisioned again after a spot reclaim: not a request's wait
        return
    seconds = (instance.ready_at - instance.created_at).total_seconds()
    READY_SECONDS.labels(product=instance.product_name, region=instance.region).observe(seconds)


def needs_upstream_cleanup(instance: Instance) -> bool:
    """Something may exist upstream for it: an id, or a create whose outcome is unknown."""
    return bool(instance.novita_instance_id) or instance.create_sent_at is not None
