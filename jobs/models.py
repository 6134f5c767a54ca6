"""Job rows: the outbox of background work.

A job names a Celery task and the id of what it works on (`subject_type`, `subject_id`); the
jobs app knows nothing else about the subject. The row, not the broker message, is the truth:
the sweeper re-sends the task of every job that is due or whose lease ran out, and the task
claims the row with a conditional UPDATE before it does anything.

    pending ──claim──► running ──► waiting ──► succeeded
       ▲                  │  │                    ▲
       └──retry later─────┘  └────────────────────┘ (or failed / cancelled from any active state)

`waiting` means the task has done its part (for instance a call to Novita) and the subject's
owner completes the job once the outcome is confirmed (the monitoring pass, for instances).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JobStatus(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    WAITING = "waiting", "waiting"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.WAITING)
FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _default_max_attempts() -> int:
    return int(settings.JOB_MAX_ATTEMPTS)


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32, db_index=True, help_text="provision, stop, delete, …")
    task_name = models.CharField(max_length=128, help_text="The Celery task that runs it.")
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    subject_type = models.CharField(max_length=32)
    subject_id = models.UUIDField(db_index=True)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Times the task claimed it.")
    max_attempts = models.PositiveIntegerField(default=_default_max_attempts)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # When the task was last sent; the sweeper re-sends a due job only after a pause.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="job_due_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="job_lease_idx"),
            models.Index(fields=["subject_type", "subject_id"], name="job_subject_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="job_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status=JobStatus.RUNNING, lease_expires_at__isnull=False)
                | ~Q(status=JobStatus.RUNNING),
                name="job_running_has_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject_type}:{self.subject_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES

    @property
    def exhausted(self) -> bool:
        """Claimed more often than allowed (a task that keeps dying, or kept failing)."""
        return self.attempts > self.max_attempts
