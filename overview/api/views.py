"""GET /api/v1/metrics/: the JSON summary (overview/summary.py)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from overview.summary import metrics_summary
from tenants.authentication import request_tenant


@extend_schema(
    summary="What runs, what it bills, what is stuck: a JSON summary",
    description="A tenant key sees its own: instances by status, the GPUs held and their hourly "
    "price, its quota, jobs and webhook deliveries by status, spot recoveries. Staff see every "
    "tenant's, plus the control plane (monitoring passes, Novita's circuit, catalog sync). "
    "Prometheus's `/metrics` has the time series.",
    responses=inline_serializer(
        "MetricsSummary",
        {
            "scope": serializers.ChoiceField(choices=["tenant", "all"]),
            "tenant": serializers.CharField(allow_null=True),
            "generated_at": serializers.DateTimeField(),
            "instances": serializers.DictField(),
            "spend": inline_serializer(
                "Spend",
                {
                    "usd_per_hour": serializers.CharField(help_text="USD, as a decimal string"),
                    "instances": serializers.IntegerField(),
                },
            ),
            "spot_recoveries": serializers.IntegerField(),
            "jobs": serializers.DictField(),
            "webhook_deliveries": serializers.DictField(),
            "quota": serializers.DictField(required=False),
            "control_plane": serializers.DictField(required=False),
        },
    ),
)
@api_view(["GET"])
def metrics_summary_view(request: Request) -> Response:
    return Response(metrics_summary(tenant=request_tenant(request)))
