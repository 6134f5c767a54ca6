"""The API root: where everything is."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

# The docs pages: this origin only. Inline styles (Swagger UI and ReDoc set them), ReDoc's
# inline start-up script and its web worker (a blob:) are allowed; images, fonts and fetches
# come from here (data: and blob: URLs are this page's own).
DOCS_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' blob:",
        "worker-src 'self' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    ]
)


# ReDoc's bundle (drf-spectacular-sidecar's copy) shows "API docs by Redocly" with a logo from
# its CDN, whatever the options: that one URL becomes an empty image of this page's own.
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_SVG = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@functools.cache
def _redoc_bundle() -> bytes:
    from django.contrib.staticfiles import finders

    path = finders.find("drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js")
    assert isinstance(path, str), "drf-spectacular-sidecar is not installed"
    with open(path, "rb") as bundle:
        return bundle.read().replace(REDOC_CDN_LOGO.encode(), EMPTY_SVG.encode())


@cache_control(max_age=3600, public=True)
def redoc_bundle(request: HttpRequest) -> HttpResponse:
    """SPECTACULAR_SETTINGS["REDOC_DIST"] points here: the sidecar's ReDoc, self-contained."""
    return HttpResponse(_redoc_bundle(), content_type="text/javascript; charset=utf-8")


def same_origin_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CSP
        return response

    return wrapped


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
