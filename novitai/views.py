"""The API root: where everything is."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

COLLECTIONS = {
    "instances": "instance-list",
    "jobs": "job-list",
    "products": "product-list",
    "optimal_product": "product-optimal",
    "regions": "region-list",
    "webhook_deliveries": "webhook-delivery-list",
    "cache": "cache-list",
    "metrics_summary": "metrics-summary",
}


@extend_schema(
    responses=inline_serializer(
        "ApiRoot", {"links": serializers.DictField(child=serializers.URLField())}
    ),
    summary="Links to the API's collections",
)
@api_view(["GET"])
def api_root(request: Request) -> Response:
    def link(path: str) -> str:
        return request.build_absolute_uri(path)

    links = {name: link(reverse(route)) for name, route in COLLECTIONS.items()}
    links.update(
        {
            "docs": link(reverse("swagger-ui")),
            "schema": link(reverse("schema")),
            "health": link("/health/ready"),
            "metrics": link("/metrics"),
        }
    )
    return Response({"links": links})
