"""/api/v1/instances/: create (202, async), list, retrieve, delete, start/stop/restart,
heartbeat, events."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from instances.access import instance_ssh_credentials_read
from instances.api.serializers import (
    ImageSaveAnswerSerializer,
    ImageSaveRequestSerializer,
    InstanceCreateInputSerializer,
    InstanceEventSerializer,
    InstanceSerializer,
    InstanceSshCredentialsSerializer,
    InstanceUpdateInputSerializer,
)
from instances.creation import ACCEPTED, CreateAnswer, instance_create_request
from instances.idempotency import HEADER
from instances.images import instance_image_save_request
from instances.models import Instance, InstanceStatus
from instances.selectors import instance_events, instance_list
from instances.services import (
    HEARTBEAT_STATUSES,
    Action,
    InstanceRequest,
    actor_of,
    instance_action_request,
    instance_delete_request,
    instance_heartbeat,
    instance_settings_update,
)
from novitai.errors import NotFound, ValidationFailed, parse_uuid
from storage.selectors import image_save_representation
from tenants.authentication import request_tenant

_ERRORS = {
    400: OpenApiResponse(description="Invalid request (error envelope)"),
    404: OpenApiResponse(description="Not found (error envelope)"),
}


_STATUS = "(?:" + "|".join(InstanceStatus.values) + ")"
_STATUS_LIST_PATTERN = rf"^ *{_STATUS} *(?:, *{_STATUS} *)*$"
_NON_BLANK = {"type": "string", "minLength": 1}


def _http(answer: CreateAnswer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status, content_type="application/json")
    if answer.replayed:
        response["Idempotent-Replayed"] = "true"
    else:
        response["Location"] = f"/api/v1/instances/{answer.instance_id}/"
    return response


@extend_schema_view(
    list=extend_schema(
        summary="List instances (newest first)",
        parameters=[
            OpenApiParameter(
                "status",
                {"type": "string", "pattern": _STATUS_LIST_PATTERN},
                description="One status or several, comma-separated: "
                + ", ".join(InstanceStatus.values),
            ),
            OpenApiParameter("name", _NON_BLANK, description="Exact name"),
            OpenApiParameter("region", _NON_BLANK, description="Region code, e.g. EU-NL-01"),
        ],
    ),
    retrieve=extend_schema(summary="An instance", responses={200: InstanceSerializer, **_ERRORS}),
)
class InstanceViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Instance]
):
    serializer_class = InstanceSerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Instance]:
        tenant = request_tenant(self.request)
        if self.action != "list":
            return instance_list(tenant=tenant)
        params = self.request.query_params
        errors: dict[str, list[str]] = {}
        statuses: list[str] = []
        if (status := params.get("status")) is not None:
            statuses = [s.strip() for s in status.split(",")]
            unknown = [repr(s) for s in statuses if s not in InstanceStatus.values]
            if unknown:
                errors["status"] = [
                    f"Unknown: {', '.join(unknown)}. One or several, comma-separated, of: "
                    f"{', '.join(InstanceStatus.values)}."
                ]
        for field in ("name", "region"):
            if params.get(field) == "":
                errors[field] = ["May not be blank: leave the parameter out instead."]
        if errors:
            raise ValidationFailed(details=errors)
        return instance_list(
            tenant=tenant,
            statuses=statuses or None,
            name=params.get("name"),
            region=params.get("region"),
            for_listing=True,
        )

    def get_object(self) -> Instance:
        instance_id = parse_uuid(self.kwargs["pk"], "instance")
        instance = self.get_queryset().filter(pk=instance_id).first()
        if instance is None:
            raise NotFound("No such instance.", code="instance_not_found")
        return instance

    # --- create ---------------------------------------------------------------------------

    @extend_schema(
        summary="Create an instance (asynchronous)",
        request=InstanceCreateInputSerializer,
        parameters=[
            OpenApiParameter(
                HEADER,
                # printable ASCII, no space at either end (idempotency_key_validate)
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": r"^[!-~](?:[ -~]{0,253}[!-~])?$",
                },
                location=OpenApiParameter.HEADER,
                description="Makes a retry safe: the same key and body get the same answer.",
            )
        ],
        responses={
            202: InstanceSerializer,
            **_ERRORS,
            409: OpenApiResponse(description="Name taken, quota exceeded, key in flight"),
            422: OpenApiResponse(description="Idempotency-Key reused with another body"),
            503: OpenApiResponse(description="Novita is not reachable (error envelope)"),
        },
    )
    def create(self, request: Request) -> HttpResponse:
        tenant = request_tenant(request)
        if tenant is None:
            raise exceptions.PermissionDenied(
                "Creating an instance needs a tenant API key (Authorization: Bearer <key>); "
                "a staff session can list and act on instances but owns none."
            )
        serializer = InstanceCreateInputSerializer(data=request.data)

        def parse() -> InstanceRequest:
            serializer.is_valid(raise_exception=True)
            return serializer.to_request()

        answer = instance_create_request(
            tenant=tenant,
            body=request.data,
            parse=parse,
            idempotency_key=request.headers.get(HEADER),
            method=request.method or "POST",
            path=request.path,
            actor=actor_of(request.user),
        )
        return _http(answer)

    # --- settings ---------------------------------------------------------------------------

    @extend_schema(
        summary="Change on_preempt, idle_timeout_seconds or webhook_url",
        description="Settings that can change while the instance lives; each change is an "
        "event (`settings_changed`). A heartbeat is not needed after changing the idle timeout: "
        "`idle_stop_at` is recomputed from it.",
        request=InstanceUpdateInputSerializer,
        responses={
            200: InstanceSerializer,
            **_ERRORS,
            409: OpenApiResponse(description="The instance is terminating or terminated"),
        },
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        instance = self.get_object()
        serializer = InstanceUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        updated = instance_settings_update(
            instance_id=instance.pk,
            tenant=request_tenant(request),
            changes=serializer.to_changes(),
            actor=actor_of(request.user),
        )
        fresh = instance_list(tenant=None).get(pk=updated.pk)
        return Response(InstanceSerializer(fresh).data)

    # --- delete, start, stop, restart -----------------------------------------------------

    def _accepted(self, instance: Instance) -> Response:
        fresh = instance_list(tenant=None).get(pk=instance.pk)
        return Response(InstanceSerializer(fresh).data, status=ACCEPTED)

    @extend_schema(
        summary="Delete an instance (asynchronous, idempotent)",
        responses={202: InstanceSerializer, **_ERRORS},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        instance = instance_delete_request(
            instance_id=self.get_object().pk,
            tenant=request_tenant(request),
            actor=actor_of(request.user),
        )
        return self._accepted(instance)

    def _act(self, request: Request, action_name: str) -> Response:
        instance = instance_action_request(
            instance_id=self.get_object().pk,
            tenant=request_tenant(request),
            action=action_name,
            actor=actor_of(request.user),
        )
        return self._accepted(instance)

    _action_schema: dict[str, Any] = {
        "request": None,
        "responses": {
            202: InstanceSerializer,
            **_ERRORS,
            409: OpenApiResponse(description="The current status does not allow it"),
        },
    }

    @extend_schema(summary="Start a stopped instance", **_action_schema)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        return self._act(request, Action.START)

    @extend_schema(summary="Stop a ready instance", **_action_schema)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        return self._act(request, Action.STOP)

    @extend_schema(summary="Restart a ready instance", **_action_schema)
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, pk: str) -> Response:
        return self._act(request, Action.RESTART)

    @extend_schema(
        summary="Record activity (puts off an idle stop)",
        description="Sets `last_active_at` to now: an instance with an `idle_timeout_seconds` "
        "is stopped once ready that long without a heartbeat. Allowed while it is "
        + ", ".join(HEARTBEAT_STATUSES)
        + "; cheap enough to call every few seconds. The answer shows `idle_stop_at`.",
        request=None,
        responses={
            200: InstanceSerializer,
            404: _ERRORS[404],
            409: OpenApiResponse(description="The current status takes no heartbeat"),
        },
    )
    @action(detail=True, methods=["post"])
    def heartbeat(self, request: Request, pk: str) -> Response:
        instance = instance_heartbeat(
            instance_id=parse_uuid(pk, "instance"), tenant=request_tenant(request)
        )
        return Response(InstanceSerializer(instance).data)

    @extend_schema(
        summary="The instance's history: every transition, oldest first",
        responses={200: InstanceEventSerializer(many=True), **_ERRORS},
    )
    @action(detail=True, methods=["get"], serializer_class=InstanceEventSerializer)
    def events(self, request: Request, pk: str) -> Response:
        events = instance_events(instance=self.get_object())
        paginator = self.paginator
        assert paginator is not None
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(
            InstanceEventSerializer(page, many=True).data  # type: ignore[arg-type]
        )

    @extend_schema(
        summary="The ssh command and password (asked of Novita now)",
        description="The tenant's own running instance only; every read is an event "
        "(`ssh_credentials_read`, with the actor). The password is nowhere else: not in the "
        "instance, its events, webhooks or logs.",
        responses={
            200: InstanceSshCredentialsSerializer,
            403: OpenApiResponse(description="Not a tenant's API key (error envelope)"),
            404: _ERRORS[404],
            409: OpenApiResponse(description="Not running, or Novita gives no ssh"),
            503: OpenApiResponse(description="Novita is not reachable (error envelope)"),
        },
    )
    @action(detail=True, methods=["get"], serializer_class=InstanceSshCredentialsSerializer)
    def ssh(self, request: Request, pk: str) -> Response:
        tenant = request_tenant(request)
        if tenant is None:
            raise exceptions.PermissionDenied(
                "SSH credentials are the tenant's: use the tenant's API key."
            )
        credentials = instance_ssh_credentials_read(
            instance_id=parse_uuid(pk, "instance"), tenant=tenant, actor=actor_of(request.user)
        )
        response = Response(
            {
                "host": credentials.host,
                "port": credentials.port,
                "user": credentials.user,
                "command": credentials.command,
                "password": credentials.password.reveal(),
            }
        )
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        summary="Save the instance as an image (asynchronous)",
        description="A ready or stopped instance; a tracked job following Novita's "
        "(GET /api/v1/image-saves/{id}/), ending in the webhook `instance.image_saved` or "
        "`instance.image_save_failed` with Novita's message; POST "
        "/api/v1/image-saves/{id}/cancel/ breaks it off.",
        request=ImageSaveRequestSerializer,
        responses={
            202: ImageSaveAnswerSerializer,
            **_ERRORS,
            409: OpenApiResponse(description="Not ready or stopped, or a save runs already"),
        },
    )
    @action(detail=True, methods=["post"], url_path="save-image")
    def save_image(self, request: Request, pk: str) -> Response:
        tenant = request_tenant(request)
        if tenant is None:
            raise exceptions.PermissionDenied("Saving an image needs the tenant's API key.")
        serializer = ImageSaveRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        save = instance_image_save_request(
            tenant=tenant,
            instance_id=parse_uuid(pk, "instance"),
            image=serializer.validated_data["image"],
            registry_auth_id=serializer.validated_data["registry_auth_id"],
            actor=actor_of(request.user),
        )
        return Response(image_save_representation(save), status=ACCEPTED)
