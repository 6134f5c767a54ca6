"""/api/v1/volumes/: list, create, retrieve, PATCH (rename; grow only), delete."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from novitai.errors import NotFound, parse_uuid
from storage.api.serializers import (
    VolumeCreateInputSerializer,
    VolumeSerializer,
    VolumeUpdateInputSerializer,
)
from storage.models import Volume
from storage.selectors import volume_list
from storage.services import volume_create, volume_delete, volume_update
from tenants.authentication import request_tenant

_ERRORS = {
    400: OpenApiResponse(description="Invalid request (error envelope)"),
    404: OpenApiResponse(description="Not found (error envelope)"),
}
_UPSTREAM = {503: OpenApiResponse(description="Novita is not reachable (error envelope)")}


@extend_schema_view(
    list=extend_schema(summary="List volumes (newest first)"),
    retrieve=extend_schema(summary="A volume", responses={200: VolumeSerializer, **_ERRORS}),
)
class VolumeViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Volume]
):
    serializer_class = VolumeSerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Volume]:
        return volume_list(tenant=request_tenant(self.request))

    def get_object(self) -> Volume:
        volume_id = parse_uuid(self.kwargs["pk"], "volume")
        volume = self.get_queryset().filter(pk=volume_id).first()
        if volume is None:
            raise NotFound("No such volume.", code="volume_not_found")
        return volume

    @extend_schema(
        summary="Create a network volume in a region",
        request=VolumeCreateInputSerializer,
        responses={
            201: VolumeSerializer,
            **_ERRORS,
            409: OpenApiResponse(description="Name taken"),
            **_UPSTREAM,
        },
    )
    def create(self, request: Request) -> Response:
        tenant = request_tenant(request)
        if tenant is None:
            raise exceptions.PermissionDenied("Creating a volume needs a tenant API key.")
        serializer = VolumeCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        volume = volume_create(
            tenant=tenant, name=data["name"], region=data["region"], size_gb=data["size_gb"]
        )
        return Response(VolumeSerializer(volume).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Rename a volume, or grow it",
        request=VolumeUpdateInputSerializer,
        responses={
            200: VolumeSerializer,
            **_ERRORS,
            409: OpenApiResponse(description="Name taken"),
            **_UPSTREAM,
        },
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        volume = self.get_object()
        serializer = VolumeUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        updated = volume_update(
            tenant=request_tenant(request),
            volume_id=volume.pk,
            name=data.get("name"),
            size_gb=data.get("size_gb"),
        )
        return Response(VolumeSerializer(updated).data)

    @extend_schema(
        summary="Delete a volume (refused while mounted)",
        responses={
            204: None,
            404: _ERRORS[404],
            409: OpenApiResponse(description="Mounted: the instances are named"),
            **_UPSTREAM,
        },
    )
    def destroy(self, request: Request, pk: str) -> Response:
        volume = self.get_object()
        volume_delete(tenant=request_tenant(request), volume_id=volume.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)
