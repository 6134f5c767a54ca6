"""GET /jobs/, GET /jobs/{id}/ (a tenant sees its own, staff all); POST /jobs/{id}/retry/ for
staff."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api.serializers import JobOutputSerializer
from jobs.models import Job, JobStatus
from jobs.selectors import job_list
from jobs.services import job_retry
from novitai.errors import NotFound, ValidationFailed, parse_uuid
from tenants.authentication import request_tenant
from tenants.permissions import IsStaff

KIND_MAX_LENGTH: int = Job._meta.get_field("kind").max_length or 32


@extend_schema_view(
    list=extend_schema(
        summary="List jobs (newest first)",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=JobStatus.values),
            OpenApiParameter(
                "kind",
                {"type": "string", "minLength": 1, "maxLength": KIND_MAX_LENGTH},
                description="A job kind: provision, stop, delete, …",
            ),
            OpenApiParameter("subject_id", OpenApiTypes.UUID),
        ],
    ),
    retrieve=extend_schema(summary="A job"),
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Job]):
    serializer_class = JobOutputSerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Job]:
        qs = job_list(tenant=request_tenant(self.request))
        if self.action != "list":
            return qs
        params = self.request.query_params
        errors: dict[str, list[str]] = {}
        if (status := params.get("status")) is not None:
            if status not in JobStatus.values:
                errors["status"] = [f"One of: {', '.join(JobStatus.values)}."]
            qs = qs.filter(status=status)
        if (kind := params.get("kind")) is not None:
            if not 1 <= len(kind) <= KIND_MAX_LENGTH:
                errors["kind"] = [f"1-{KIND_MAX_LENGTH} characters, e.g. provision."]
            qs = qs.filter(kind=kind)
        if (subject_id := params.get("subject_id")) is not None:
            try:
                qs = qs.filter(subject_id=uuid.UUID(subject_id))
            except ValueError:
                errors["subject_id"] = ["Must be a UUID."]
        if errors:
            raise ValidationFailed(details=errors)
        return qs

    def get_object(self) -> Job:
        job_id = parse_uuid(self.kwargs["pk"], "job")
        job = self.get_queryset().filter(pk=job_id).first()
        if job is None:
            raise NotFound("No such job.", code="job_not_found")
        return job

    @extend_schema(
        request=None,
        responses={
            202: JobOutputSerializer,
            409: OpenApiResponse(description="The job is not failed or cancelled"),
        },
        summary="Retry a failed or cancelled job (staff)",
    )
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def retry(self, request: Request, pk: str) -> Response:
        job = job_retry(job_id=self.get_object().pk)
        return Response(JobOutputSerializer(job).data, status=202)
