"""Reads on jobs."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from jobs.models import Job
from tenants.models import Tenant


def job_list(*, tenant: Tenant | None) -> QuerySet[Job]:
    """A tenant's jobs, newest first; every job for staff (tenant None)."""
    qs = Job.objects.all()
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    return qs.order_by("-created_at", "-id")


def job_get(*, job_id: uuid.UUID) -> Job | None:
    return Job.objects.filter(pk=job_id).first()
