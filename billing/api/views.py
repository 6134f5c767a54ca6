"""GET /api/v1/costs/: what instances cost, cut by instance, product, region, day or tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from billing.api.serializers import (
    BudgetInputSerializer,
    BudgetQuerySerializer,
    BudgetSerializer,
    CostQuerySerializer,
    CostReportSerializer,
)
from billing.budgets import budget_put, budget_representation, budget_status
from billing.ledger import money_text
from billing.selectors import cost_report, month_start
from novitai.errors import NotFound, ValidationFailed
from tenants.authentication import request_tenant
from tenants.selectors import Tenant, tenant_find


def _text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@extend_schema(
    summary="What instances cost, from the ledger",
    description="Costs within [from, to) (default: this month so far), one row per group, the "
    "most first (by day: in order); `total_usd` is the sum of the rows exactly. A tenant key sees "
    "its own; staff see every tenant's and may group by tenant.",
    parameters=[CostQuerySerializer],
    responses={200: CostReportSerializer, 400: None},
)
@api_view(["GET"])
def costs_view(request: Request) -> Response:
    query = CostQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    data: dict[str, Any] = query.validated_data
    tenant = request_tenant(request)
    if data["group_by"] == "tenant" and tenant is not None:
        raise ValidationFailed(
            "Only staff can group by tenant.",
            details={"group_by": ["Only staff can group by tenant."]},
        )
    now = timezone.now()
    start = data.get("from") or month_start(now)
    end = data.get("to") or now
    if end <= start:
        raise ValidationFailed(details={"from": ["Must be before `to` (default: now)."]})
    report = cost_report(tenant=tenant, start=start, end=end, group_by=data["group_by"], now=now)
    return Response(
        {
            "from": _text(report.start),
            "to": _text(report.end),
            "group_by": report.group_by,
            "rows": [{"key": r.key, "cost_usd": money_text(r.cost_usd)} for r in report.rows],
            "total_usd": money_text(report.total_usd),
        }
    )


def _budget_tenant(request: Request) -> Tenant:
    """A tenant key: its own; staff: ?tenant=<name>."""
    tenant = request_tenant(request)
    if tenant is not None:
        return tenant
    query = BudgetQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    name = query.validated_data.get("tenant")
    if not name:
        raise ValidationFailed(details={"tenant": ["Staff name the tenant: ?tenant=<name>."]})
    found = tenant_find(name=name)
    if found is None:
        raise NotFound(f"No tenant named {name!r}.", details={"tenant": [f"{name!r} is unknown."]})
    return found


@extend_schema(
    methods=["GET"],
    summary="The tenant's monthly budget and what is spent",
    parameters=[BudgetQuerySerializer],
    responses={200: BudgetSerializer, 400: None, 404: None},
)
@extend_schema(
    methods=["PUT"],
    summary="Set the tenant's monthly budget",
    description="Thresholds already reached this month send their webhook at once, once each. "
    "Once spent reaches the limit, creates and starts answer 402 budget_exhausted and "
    "on_exhausted (stop, delete) is applied to the tenant's billing instances.",
    parameters=[BudgetQuerySerializer],
    request=BudgetInputSerializer,
    responses={200: BudgetSerializer, 400: None, 404: None},
)
@api_view(["GET", "PUT"])
def budget_view(request: Request) -> Response:
    tenant = _budget_tenant(request)
    now = timezone.now()
    if request.method == "PUT":
        body = BudgetInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        budget_put(
            tenant=tenant,
            monthly_limit_usd=data["monthly_limit_usd"],
            alert_thresholds=data["alert_thresholds"],
            on_exhausted=data["on_exhausted"],
            webhook_url=data.get("webhook_url"),
            now=now,
        )
    return Response(budget_representation(budget_status(tenant=tenant, now=now), now))
