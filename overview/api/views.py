"""GET /api/v1/metrics/: the JSON summary (overview/summary.py)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from overview.api.serializers import MetricsSummarySerializer
from overview.summary import metrics_summary
from tenants.authentication import request_tenant


@extend_schema(
    summary="What runs, what it bills, what is stuck: a JSON summary",
    description="A tenant key sees its own: instances by status, the GPUs held and their hourly "
    "price, its quota, jobs and webhook deliveries by status, spot recoveries. Staff see every "
    "tenant's, plus the control plane (monitoring passes, Novita's circuit, catalog sync). "
    "Prometheus's `/metrics` has the time series.",
    responses=MetricsSummarySerializer,
)
@api_view(["GET"])
def metrics_summary_view(request: Request) -> Response:
    return Response(metrics_summary(tenant=request_tenant(request)))
