"""GET /api/v1/metrics/: a tenant's own summary; staff's summary of everything."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from billing.selectors import month_start
from billing.services import Observation, Prices, ledger_observe
from instances.models import Instance, InstanceStatus
from instances.services import novita_name_for
from jobs.models import Job, JobStatus
from tenants.models import Tenant
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db
S = InstanceStatus


def instance(tenant: Tenant, status: str, **fields: Any) -> Instance:
    pk = uuid.uuid4()
    return Instance.objects.create(
        id=pk,
        tenant=tenant,
        name=f"i-{pk.hex[:8]}",
        status=status,
        template_id="212",
        rootfs_size=60,
        novita_name=novita_name_for(pk),
        **fields,
    )


def half_an_hour(tenant: Tenant, gpu_num: int) -> None:
    """Half an hour of `gpu_num` cards at $0.34 in the ledger, early this month."""
    start = month_start(timezone.now()) + timedelta(minutes=1)
    prices = Prices("RTX 4090 24GB", "US-TX-02", "on_demand", 34000, gpu_num, 500, 60)
    pk = uuid.uuid4()
    for phase, at in (("compute", start), ("", start + timedelta(minutes=30))):
        observation = Observation(pk, tenant.pk, "n-1", phase, prices)
        ledger_observe(observations=[observation], at=at)


@pytest.fixture
def rows(tenant: Tenant) -> Tenant:
    """The tenant's instances in several statuses, and another tenant's."""
    other = Tenant.objects.create(name="other")
    instance(tenant, S.READY, gpu_num=2, price_per_hour=Decimal("0.68"))
    instance(tenant, S.HEALTH_CHECKING, gpu_num=1, price_per_hour=Decimal("0.34"), recoveries=1)
    instance(tenant, S.STOPPED, gpu_num=4, price_per_hour=Decimal("1.36"))
    instance(tenant, S.PENDING, gpu_num=1)
    instance(tenant, S.TERMINATED, gpu_num=8, price_per_hour=Decimal("9.99"))
    instance(other, S.READY, gpu_num=8, price_per_hour=Decimal("2.72"))
    Job.objects.create(
        kind="provision", task_name="instances.provision", tenant=tenant,
        subject_type="instance", subject_id=uuid.uuid4(), status=JobStatus.FAILED,
    )  # fmt: skip
    WebhookDelivery.objects.create(
        tenant=other, event_type="instance.ready", target_url="https://x.example/", payload={}
    )
    tenant.max_gpus = 16
    tenant.save()
    half_an_hour(tenant, 2)
    half_an_hour(other, 1)
    return tenant


def test_a_tenant_sees_its_own(api_client: APIClient, rows: Tenant) -> None:
    response = api_client.get("/api/v1/metrics/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scope"] == "tenant"
    assert body["tenant"] == rows.name
    counts = body["instances"]["by_status"]
    assert set(counts) == set(S.values)
    assert (counts["ready"], counts["stopped"], counts["terminated"]) == (1, 1, 1)
    assert body["instances"]["live"] == 4  # terminated does not count
    assert body["instances"]["gpus_live"] == 8
    # ready and health_checking hold GPUs; stopped and pending do not bill a GPU.
    assert body["instances"]["holding_a_gpu"] == 2
    assert body["instances"]["gpus_held"] == 3
    assert body["spend"] == {
        "usd_per_hour": "1.02",
        "instances": 2,
        "this_month_usd": "0.340000",
        "rate_usd_per_hour": "0.000000",
    }
    assert body["spot_recoveries"] == 1
    assert body["quota"] == {"max_instances": None, "max_gpus": 16, "instances": 4, "gpus": 8}
    assert body["jobs"]["by_status"]["failed"] == 1
    assert sum(body["webhook_deliveries"]["by_status"].values()) == 0  # the other tenant's
    assert "control_plane" not in body


def test_staff_see_everything_and_the_control_plane(
    staff_client: APIClient, rows: Tenant, novita_settings: Any
) -> None:
    body = staff_client.get("/api/v1/metrics/").json()
    assert body["scope"] == "all"
    assert body["tenant"] is None
    assert body["instances"]["by_status"]["ready"] == 2
    assert body["spend"] == {
        "usd_per_hour": "3.74",
        "instances": 3,
        "this_month_usd": "0.510000",
        "rate_usd_per_hour": "0.000000",
    }
    assert body["webhook_deliveries"]["by_status"]["pending"] == 1
    assert "quota" not in body
    plane = body["control_plane"]
    assert plane["novita_circuit"] == "closed"
    assert isinstance(plane["monitor_passes"], int)


def test_nothing_yet_is_zeros(api_client: APIClient) -> None:
    body = api_client.get("/api/v1/metrics/").json()
    assert body["spend"] == {
        "usd_per_hour": "0.00",
        "instances": 0,
        "this_month_usd": "0.000000",
        "rate_usd_per_hour": "0.000000",
    }
    assert set(body["instances"]["by_status"].values()) == {0}


def test_queries_do_not_grow_with_rows(api_client: APIClient, tenant: Tenant) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api_client.get("/api/v1/metrics/").status_code == 200
        return len(ctx.captured_queries)

    queries()  # the key's first use also writes its last_used_at
    few = queries()
    for _ in range(30):
        instance(tenant, S.READY, price_per_hour=Decimal("0.5"))
    assert queries() == few


def test_needs_a_key(client: Any, db: None) -> None:
    response = client.get("/api/v1/metrics/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_linked_from_the_api_root(api_client: APIClient) -> None:
    links = api_client.get("/api/v1/").json()["links"]
    assert links["metrics_summary"].endswith("/api/v1/metrics/")
