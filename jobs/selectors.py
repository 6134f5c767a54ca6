"""Reads on jobs. Other apps take the Job class (a type) and JobStatus from here, never from
jobs.models (tests/test_architecture.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Count, Min, QuerySet

from jobs.models import Job, JobStatus
from tenants.selectors import Tenant


def job_list(*, tenant: Tenant | None) -> QuerySet[Job]:
    """A tenant's jobs, newest first; every job for staff (tenant None)."""
    qs = Job.objects.all()
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    return qs.order_by("-created_at", "-id")


def job_get(*, job_id: uuid.UUID) -> Job | None:
    return Job.objects.filter(pk=job_id).first()


def job_oldest_due_at(*, now: datetime) -> datetime | None:
    """When the longest-waiting job became due to run: pending and due, or running with its
    lease run out (its worker died); None when none is. Both by their indexes."""
    pending = Job.objects.filter(status=JobStatus.PENDING, next_attempt_at__lte=now).aggregate(
        oldest=Min("next_attempt_at")
    )["oldest"]
    orphaned = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now).aggregate(
        oldest=Min("lease_expires_at")
    )["oldest"]
    return min((at for at in (pending, orphaned) if at is not None), default=None)


def job_oldest_due_by_task(*, now: datetime) -> dict[str, datetime]:
    """Per task name, when its longest-waiting job became due (pending and due, or running with
    its lease run out): what each queue has not served yet."""
    oldest: dict[str, datetime] = {}
    pending = Job.objects.filter(status=JobStatus.PENDING, next_attempt_at__lte=now)
    orphaned = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    for qs, column in ((pending, "next_attempt_at"), (orphaned, "lease_expires_at")):
        for row in qs.order_by().values("task_name").annotate(at=Min(column)):
            task, at = row["task_name"], row["at"]
            oldest[task] = min(at, oldest.get(task, at))
    return oldest


def jobs_of(*, subject_type: str, subject_id: uuid.UUID) -> QuerySet[Job]:
    """Every job of one subject (an instance's provisioning and actions), newest first."""
    return Job.objects.filter(subject_type=subject_type, subject_id=subject_id).order_by(
        "-created_at", "-id"
    )


def job_counts_by_status(*, tenant: Tenant | None) -> dict[str, int]:
    """Jobs by status (every status, 0 included): a tenant's, or everyone's (None)."""
    counts = dict.fromkeys(JobStatus.values, 0)
    jobs = Job.objects.filter(tenant=tenant) if tenant is not None else Job.objects.all()
    for row in jobs.values("status").annotate(n=Count("pk")).order_by():
        counts[row["status"]] = row["n"]
    return counts
