from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.models import Job, JobStatus
from jobs.services import job_retry
from novitai.errors import ServiceError


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "subject_type",
        "subject_id",
        "tenant",
        "attempts",
        "next_attempt_at",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "subject_type", "tenant"]
    search_fields = ["=id", "=subject_id"]
    ordering = ["-created_at"]
    readonly_fields = [f.name for f in Job._meta.get_fields() if f.concrete]
    actions = ["retry_jobs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry the selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done = 0
        for job in queryset.filter(status__in=[JobStatus.FAILED, JobStatus.CANCELLED]):
            try:
                job_retry(job_id=job.pk)
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"Job {job.pk}: {exc.message}", messages.ERROR)
        self.message_user(request, f"Retried {done} job(s).", messages.SUCCESS)
