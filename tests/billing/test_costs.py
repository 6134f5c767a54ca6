"""The ledger's arithmetic and the costs report, from observations at given times: exact sums,
rows cut by instance, product, region, day and tenant, totals that are the sum of the rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from billing.ledger import phase_of
from billing.models import Segment
from billing.selectors import cost_report, spend_by_tenant, tenant_rate
from billing.services import Observation, Prices, account_prices_capture, ledger_observe
from tenants.selectors import Tenant

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # an hour before midnight
PRICES = Prices(
    product_name="RTX 4090 24GB",
    region="US-TX-02",
    billing_mode="on_demand",
    compute_price=34000,  # $0.34 per card-hour
    gpu_num=2,
    disk_price=500,  # $0.005 per GB-day
    disk_gb=48,
)


def observe(tenant: Tenant, instance_id: uuid.UUID, status: str, at: datetime) -> None:
    ledger_observe(
        observations=[
            Observation(
                instance_id=instance_id,
                tenant_id=tenant.pk,
                novita_instance_id="n-" + str(instance_id)[:8],
                phase=phase_of(status),
                fallback=PRICES,
            )
        ],
        at=at,
    )


def test_phases_follow_novitas_rules(tenant: Tenant) -> None:
    assert [phase_of(s) for s in ("toCreate", "creating", "pulling", "running")] == [
        "",
        "",
        "compute",
        "compute",
    ]
    assert [phase_of(s) for s in ("toStop", "stopping", "exited", "toStart", "removing")] == [
        "compute",
        "compute",
        "disk",
        "",
        "",
    ]


def a_day_of_use(tenant: Tenant) -> uuid.UUID:
    """Two cards for 90 minutes across midnight, then its disk for 24 hours, then deleted."""
    pk = uuid.uuid4()
    account_prices_capture(instance_id=pk, tenant=tenant, prices=PRICES, at=T0)
    observe(tenant, pk, "creating", T0)
    observe(tenant, pk, "pulling", T0 + timedelta(minutes=30))
    observe(tenant, pk, "running", T0 + timedelta(minutes=31))  # same phase: nothing new
    observe(tenant, pk, "exited", T0 + timedelta(minutes=120))
    observe(tenant, pk, "removing", T0 + timedelta(minutes=120, hours=24))
    return pk


def test_a_report_cuts_by_day_and_adds_up(tenant: Tenant) -> None:
    pk = a_day_of_use(tenant)
    assert Segment.objects.filter(instance_id=pk).count() == 2
    end = T0 + timedelta(days=3)
    by_day = cost_report(tenant=tenant, start=T0, end=end, group_by="day", now=end)
    # Compute: 30 min before midnight, 60 after, at $0.68/h; disk: 48 GB x $0.005 x 1 day.
    assert [(r.key, r.cost_usd) for r in by_day.rows] == [
        ("2026-11-30", Decimal("0.340000")),
        ("2026-12-01", Decimal("0.680000") + Decimal("0.240000") * 23 / 24),
        ("2026-12-02", Decimal("0.010000")),
    ]
    assert by_day.total_usd == Decimal("1.260000") == sum(r.cost_usd for r in by_day.rows)
    by_product = cost_report(tenant=tenant, start=T0, end=end, group_by="product", now=end)
    assert [(r.key, r.cost_usd) for r in by_product.rows] == [
        ("RTX 4090 24GB", Decimal("1.260000"))
    ]
    assert tenant_rate(tenant=tenant) == 0
    [spend] = spend_by_tenant(now=end)
    assert (spend.tenant, spend.spent_usd, spend.rate_usd_per_hour) == ("acme", Decimal("1.26"), 0)


def test_a_window_clips_segments(tenant: Tenant) -> None:
    a_day_of_use(tenant)
    start = T0 + timedelta(minutes=60)
    report = cost_report(
        tenant=tenant, start=start, end=start + timedelta(minutes=30), group_by="region", now=start
    )
    assert [(r.key, r.cost_usd) for r in report.rows] == [("US-TX-02", Decimal("0.340000"))]


def test_an_open_segment_counts_until_now(tenant: Tenant) -> None:
    pk = uuid.uuid4()
    observe(tenant, pk, "running", T0)
    assert tenant_rate(tenant=tenant) == Decimal("0.68")
    now = T0 + timedelta(minutes=15)
    report = cost_report(
        tenant=tenant, start=T0, end=T0 + timedelta(days=1), group_by="instance", now=now
    )
    assert [(r.key, r.cost_usd) for r in report.rows] == [(str(pk), Decimal("0.170000"))]


def test_the_costs_endpoint(
    tenant: Tenant, api_client: APIClient, other_tenant_client: APIClient, staff_client: APIClient
) -> None:
    a_day_of_use(tenant)
    query = "from=2026-11-30T00:00:00Z&to=2026-12-03T00:00:00Z"
    body = api_client.get(f"/api/v1/costs/?{query}&group_by=day").json()
    assert body["group_by"] == "day"
    assert body["from"] == "2026-11-30T00:00:00Z"
    assert [row["cost_usd"] for row in body["rows"]] == ["0.340000", "0.910000", "0.010000"]
    assert body["total_usd"] == "1.260000"
    assert other_tenant_client.get(f"/api/v1/costs/?{query}").json()["rows"] == []
    staff = staff_client.get(f"/api/v1/costs/?{query}&group_by=tenant").json()
    assert staff["rows"] == [{"key": "acme", "cost_usd": "1.260000"}]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("group_by=colour", "group_by"),
        ("from=yesterday", "from"),
        ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "to"),
        ("group_by=tenant", "group_by"),
    ],
)
def test_bad_queries_name_the_field(api_client: APIClient, query: str, field: str) -> None:
    response = api_client.get(f"/api/v1/costs/?{query}")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_spend_metrics(tenant: Tenant, client: Any) -> None:
    a_day_of_use(tenant)
    observe(tenant, uuid.uuid4(), "running", T0)  # still running: $0.68 an hour
    text = client.get("/metrics").content.decode()
    assert 'novitai_spend_rate_usd_per_hour{tenant="acme"} 0.68' in text
    assert 'novitai_spend_usd_total{tenant="acme"}' in text
