"""Jobs: what each instance's provisioning and actions did, linked to the instance, and retry
(from the first attempt) that asks first."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.safestring import SafeString

from jobs.models import Job, JobStatus
from jobs.services import job_retry
from novitai.console import NONE, act_on_each, confirmation, confirmed, link, staff_actor

# The admin page of a job's subject, by subject type (jobs know nothing of instances).
SUBJECT_PAGES = {"instance": "admin:instances_instance_change"}


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "kind",
        "status",
        "subject_link",
        "tenant",
        "attempts",
        "next_attempt_at",
        "created_at",
        "finished_at",
        "id",
    ]
    list_filter = ["status", "kind", "subject_type", "tenant"]
    search_fields = ["=id", "=subject_id"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    actions = ["retry_jobs"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Job._meta.get_fields() if f.concrete] + ["subject_link"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="subject")
    def subject_link(self, job: Job) -> SafeString:
        try:
            url = reverse(SUBJECT_PAGES[job.subject_type], args=[job.subject_id])
        except (KeyError, NoReverseMatch):
            return NONE
        return link(url, f"{job.subject_type} {job.subject_id}")

    @admin.action(description="Retry the selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> TemplateResponse | None:
        retryable = queryset.filter(status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
        if not confirmed(request):
            return confirmation(
                request,
                self,
                title=f"Retry {retryable.count()} job(s)",
                question="Retry these jobs from their first attempt? (Only failed or cancelled "
                "jobs are retried.)",
                objects=retryable,
                action="retry_jobs",
                cancel_url=reverse("admin:jobs_job_changelist"),
            )
        actor = staff_actor(request)
        act_on_each(
            self, request, retryable, "Retried", lambda j: job_retry(job_id=j.pk, actor=actor)
        )
        return None
