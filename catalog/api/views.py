"""Catalog endpoints: regions, products, the optimal offer (a dry run), templates (tenants and
staff); the caches and an on-demand sync (staff)."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.serializers import (
    CacheClearedOutputSerializer,
    CacheStatsOutputSerializer,
    OptimalOutputSerializer,
    OptimalQuerySerializer,
    ProductOutputSerializer,
    ProductQuerySerializer,
    RegionOutputSerializer,
    SyncOutputSerializer,
    TemplateOutputSerializer,
)
from catalog.caches import (
    CacheStats,
    cache_clear,
    cache_key_delete,
    cache_stats_get,
    cache_stats_list,
)
from catalog.models import Product, Region
from catalog.selectors import offers_require, product_list, region_list
from catalog.services import catalog_ensure_fresh, catalog_sync, template_get
from novitai.errors import Conflict, UpstreamUnavailable
from tenants.permissions import IsStaff

ERROR = OpenApiResponse(description="The error envelope.")


def _query(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return {**serializer.validated_data}


# A view that reads the catalog decides its freshness once, before anything is read (its query's
# validation included): a stale catalog is answered as it is, and a sync is sent. (A comment, not
# a docstring: drf-spectacular would make it the description of every catalog operation.)
class ReadsTheCatalog(APIView):
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        catalog_ensure_fresh()


@extend_schema(
    tags=["catalog"],
    summary="Novita regions",
    responses={200: RegionOutputSerializer(many=True), 503: ERROR},
)
class RegionListView(ReadsTheCatalog, generics.ListAPIView[Region]):
    serializer_class = RegionOutputSerializer

    def get_queryset(self) -> QuerySet[Region]:
        return region_list()


@extend_schema(
    tags=["catalog"],
    summary="GPU products per region, cheapest first",
    parameters=[ProductQuerySerializer],
    responses={200: ProductOutputSerializer(many=True), 400: ERROR, 503: ERROR},
)
class ProductListView(ReadsTheCatalog, generics.ListAPIView[Product]):
    serializer_class = ProductOutputSerializer

    def get_queryset(self) -> QuerySet[Product]:
        query = self._params()
        return product_list(
            name=query.get("name"),
            region=query.get("region"),
            billing_mode=query.get("billing_mode"),
            available=query.get("available"),
            max_price_per_hour=query.get("max_price"),
            gpu_num=query["gpu_num"],
        )

    def _params(self) -> dict[str, Any]:
        if not hasattr(self, "_validated_query"):
            self._validated_query = _query(ProductQuerySerializer, self.request)
        return self._validated_query

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):
            return dict(context)
        query = self._params()
        return {**context, "billing_mode": query.get("billing_mode"), "gpu_num": query["gpu_num"]}


class OptimalOfferView(ReadsTheCatalog):
    @extend_schema(
        tags=["catalog"],
        summary="The offer that would be picked, every offer in order, and why others are not",
        description=(
            "A dry run of offer selection. Offers: available products of the requested names "
            "with gpu_num GPUs, sold in billing_mode, within rootfs limits and max price, not "
            "failed for lack of capacity in the last minutes. Order: preferred region, then the "
            "configured fallback regions, then any region; within each, cheapest first across "
            "all names (an earlier name wins a price tie), then inventory, memory, CPU."
        ),
        parameters=[OptimalQuerySerializer],
        responses={200: OptimalOutputSerializer, 400: ERROR, 404: ERROR, 503: ERROR},
    )
    def get(self, request: Request) -> Response:
        query = _query(OptimalQuerySerializer, request)
        selection = offers_require(
            product_names=query["product_names"],
            gpu_num=query["gpu_num"],
            region=query.get("region"),
            billing_mode=query["billing_mode"],
            max_price_per_hour=query.get("max_price_per_hour"),
            rootfs_size=query.get("rootfs_size"),
        )
        return Response(OptimalOutputSerializer(selection).data)


class TemplateDetailView(APIView):
    @extend_schema(
        tags=["catalog"],
        summary="The template configuration novitai would create an instance from",
        responses={200: TemplateOutputSerializer, 404: ERROR, 503: ERROR},
    )
    def get(self, request: Request, template_id: str) -> Response:
        config = template_get(template_id=template_id)
        data = {
            "id": config.id,
            "name": config.name,
            "image": config.image,
            "image_auth_id": config.image_auth_id,
            "start_command": config.start_command,
            "rootfs_size": config.rootfs_size,
            "ports": [{"port": p.port, "type": p.type} for p in config.ports],
            "envs": [{"key": e.key} for e in config.envs],
        }
        return Response(TemplateOutputSerializer(data).data)


# --- staff ---------------------------------------------------------------------------------------


def _stats(stats: CacheStats) -> dict[str, Any]:
    return {**dataclasses.asdict(stats), "hit_ratio": stats.hit_ratio}


class CacheListView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        tags=["cache"],
        summary="Statistics of every novitai cache (staff)",
        responses={200: CacheStatsOutputSerializer(many=True), 403: ERROR},
    )
    def get(self, request: Request) -> Response:
        stats = [_stats(s) for s in cache_stats_list()]
        return Response(CacheStatsOutputSerializer(stats, many=True).data)

    @extend_schema(
        tags=["cache"],
        operation_id="cache_clear_all",
        summary="Clear every novitai cache (staff; never the broker's keys)",
        responses={200: CacheClearedOutputSerializer, 403: ERROR},
    )
    def delete(self, request: Request) -> Response:
        return Response(CacheClearedOutputSerializer({"cleared": cache_clear()}).data)


class CacheDetailView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        tags=["cache"],
        summary="Statistics of one cache (staff)",
        responses={200: CacheStatsOutputSerializer, 403: ERROR, 404: ERROR},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(CacheStatsOutputSerializer(_stats(cache_stats_get(name=name))).data)

    @extend_schema(
        tags=["cache"],
        operation_id="cache_clear",
        summary="Clear one cache (staff)",
        responses={200: CacheClearedOutputSerializer, 403: ERROR, 404: ERROR},
    )
    def delete(self, request: Request, name: str) -> Response:
        return Response(CacheClearedOutputSerializer({"cleared": cache_clear(name=name)}).data)


class CacheKeyView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        tags=["cache"],
        operation_id="cache_key_delete",
        summary="Delete one key of a cache (staff)",
        responses={204: None, 403: ERROR, 404: ERROR},
    )
    def delete(self, request: Request, name: str, key: str) -> Response:
        cache_key_delete(name=name, key=key)
        return Response(status=204)


class CatalogSyncView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        tags=["catalog"],
        summary="Sync regions and products from Novita now (staff)",
        request=None,
        responses={200: SyncOutputSerializer, 403: ERROR, 409: ERROR, 503: ERROR},
    )
    def post(self, request: Request) -> Response:
        result = catalog_sync()
        if result.outcome == "skipped":
            raise Conflict("A catalog sync is already running.", code="sync_in_progress")
        if result.outcome == "failure":
            raise UpstreamUnavailable(
                f"The catalog sync failed; the previous catalog stays in place: {result.error}"
            )
        data = {"outcome": result.outcome, "duration_seconds": result.duration_seconds}
        return Response(SyncOutputSerializer({**data, **result.counts()}).data)
