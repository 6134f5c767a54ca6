"""/api/v1/image-saves/: list, retrieve, cancel (created by POST …/instances/{id}/save-image/)."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from novitai.errors import NotFound, parse_uuid
from storage.images import image_save_cancel
from storage.models import ImageSave, ImageSaveStatus
from storage.selectors import (
    ImageSaveRepresentation,
    image_save_list,
    image_save_representation,
)
from tenants.authentication import request_tenant


class ImageSaveSerializer(serializers.Serializer[ImageSave]):
    id = serializers.UUIDField()
    instance_id = serializers.UUIDField()
    instance_name = serializers.CharField()
    image = serializers.CharField()
    status = serializers.ChoiceField(choices=ImageSaveStatus.choices)
    novita_job_id = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True, help_text="Novita's, when it failed.")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance: ImageSave) -> ImageSaveRepresentation:  # type: ignore[override]
        return image_save_representation(instance)


@extend_schema_view(
    list=extend_schema(summary="List image saves (newest first)"),
    retrieve=extend_schema(
        summary="An image save",
        responses={200: ImageSaveSerializer, 404: OpenApiResponse(description="Not found")},
    ),
)
class ImageSaveViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[ImageSave]
):
    serializer_class = ImageSaveSerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[ImageSave]:
        return image_save_list(tenant=request_tenant(self.request))

    def get_object(self) -> ImageSave:
        save_id = parse_uuid(self.kwargs["pk"], "image_save")
        save = self.get_queryset().filter(pk=save_id).first()
        if save is None:
            raise NotFound("No such image save.", code="image_save_not_found")
        return save

    @extend_schema(
        summary="Cancel an image save (Novita's job/break)",
        request=None,
        responses={
            200: ImageSaveSerializer,
            404: OpenApiResponse(description="Not found"),
            409: OpenApiResponse(description="It has ended"),
            503: OpenApiResponse(description="Novita is not reachable"),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        save = image_save_cancel(tenant=request_tenant(request), save_id=self.get_object().pk)
        return Response(ImageSaveSerializer(save).data)
