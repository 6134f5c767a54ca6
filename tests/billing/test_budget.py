"""Tenant budgets: GET/PUT /api/v1/budget/, thresholds once per month, 402 budget_exhausted on
create and start (nothing created, nothing enqueued), on_exhausted applied by the money sweep,
and the admission rule holding under 50 parallel creates."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import BudgetAlert
from instances.models import Instance
from instances.money import instances_money_sweep
from tests.instances.conftest import create, create_body
from tests.instances.helpers import monitor_until, provision, reasons
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)
HOOK = "https://hooks.example.com/budget"
RATE = Decimal("0.34")  # an RTX 4090 an hour, in every region of the sandbox


def put(client: APIClient, body: dict[str, Any], query: str = "") -> Any:
    return client.put(f"/api/v1/budget/{query}", body, format="json")


def alerts() -> list[dict[str, Any]]:
    return [
        d.payload["data"]
        for d in WebhookDelivery.objects.filter(event_type="budget.threshold_reached").order_by(
            "created_at"
        )
    ]


def test_get_and_put(api_client: APIClient, staff_client: APIClient, tenant: Any) -> None:
    body = api_client.get("/api/v1/budget/").json()
    assert body["monthly_limit_usd"] is None
    assert body["alert_thresholds"] == [50, 80, 100]
    assert (body["spent_this_month_usd"], body["remaining_usd"]) == ("0.000000", None)
    response = put(
        api_client,
        {"monthly_limit_usd": "500.00", "alert_thresholds": [80, 100], "on_exhausted": "stop"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["monthly_limit_usd"] == "500.00"
    assert response.json()["remaining_usd"] == "500.000000"
    staff = staff_client.get("/api/v1/budget/?tenant=acme").json()
    assert (staff["monthly_limit_usd"], staff["on_exhausted"]) == ("500.00", "stop")
    assert staff_client.get("/api/v1/budget/").status_code == 400
    assert staff_client.get("/api/v1/budget/?tenant=nobody").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"monthly_limit_usd": "-1"}, "monthly_limit_usd"),
        ({"monthly_limit_usd": "lots"}, "monthly_limit_usd"),
        ({"monthly_limit_usd": "1.005"}, "monthly_limit_usd"),
        ({"monthly_limit_usd": "5", "alert_thresholds": [0, 50]}, "alert_thresholds"),
        ({"monthly_limit_usd": "5", "alert_thresholds": [50, 101]}, "alert_thresholds"),
        ({"monthly_limit_usd": "5", "alert_thresholds": [80, 50]}, "alert_thresholds"),
        ({"monthly_limit_usd": "5", "on_exhausted": "panic"}, "on_exhausted"),
        ({"monthly_limit_usd": "5", "webhook_url": "http://127.0.0.1/x"}, "webhook_url"),
        ({"monthly_limit_usd": "5", "colour": "red"}, "colour"),
    ],
)
def test_bad_budgets_name_the_field(
    api_client: APIClient, tenant: Any, body: dict[str, Any], field: str
) -> None:
    response = put(api_client, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert api_client.get("/api/v1/budget/").json()["monthly_limit_usd"] is None


def test_crossing_the_budget(make: Any, api_client: APIClient, sent_tasks: Any) -> None:
    ready = monitor_until(provision(make(name="runner")), "ready")
    put(
        api_client,
        {
            "monthly_limit_usd": "0.50",
            "alert_thresholds": [50, 80, 100],
            "on_exhausted": "stop",
            "webhook_url": HOOK,
        },
    )
    assert alerts() == []  # nothing spent yet
    # The next create: an hour of what runs and of it would pass the limit.
    sent_before = len(sent_tasks.calls)
    refused = create(api_client, create_body(name="second"))
    assert refused.status_code == 402, refused.content
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert not Instance.objects.filter(name="second").exists()
    assert len(sent_tasks.calls) == sent_before
    # Two hours later the running instance has spent $0.68 of $0.50.
    later = timezone.now() + timedelta(hours=2)
    report = instances_money_sweep(later)
    assert report.budget_actions == 1
    assert [a["threshold"] for a in alerts()] == [50, 80, 100]
    assert alerts()[0]["limit_usd"] == "0.50"
    assert alerts()[0]["month"] == later.strftime("%Y-%m")
    instances_money_sweep(later + timedelta(minutes=1))
    assert len(alerts()) == 3  # once each
    assert BudgetAlert.objects.count() == 3
    stopped = Instance.objects.get(pk=ready.pk)
    assert stopped.status == "stopping"
    assert reasons(stopped)[-1] == "budget_exhausted"
    last = stopped.events.last()
    assert last is not None
    assert last.actor == "system"


def test_thresholds_already_crossed_fire_at_once(make: Any, api_client: APIClient) -> None:
    monitor_until(provision(make(name="runner")), "ready")
    put(api_client, {"monthly_limit_usd": "0.00", "webhook_url": HOOK})
    assert [a["threshold"] for a in alerts()] == [50, 80, 100]
    put(api_client, {"monthly_limit_usd": "0.00", "webhook_url": HOOK})
    assert len(alerts()) == 3


def test_a_start_is_refused_once_exhausted(make: Any, api_client: APIClient) -> None:
    from instances.services import instance_action_request

    ready = monitor_until(provision(make(name="runner")), "ready")
    instance_action_request(instance_id=ready.pk, tenant=None, action="stop", actor="test")
    put(api_client, {"monthly_limit_usd": "0.10"})
    response = api_client.post(f"/api/v1/instances/{ready.pk}/start/")
    assert response.status_code == 409  # stopping: not startable yet, whatever the budget
    Instance.objects.filter(pk=ready.pk).update(status="stopped")
    response = api_client.post(f"/api/v1/instances/{ready.pk}/start/")
    assert response.status_code == 402, response.content
    assert response.json()["error"]["code"] == "budget_exhausted"
    assert Instance.objects.get(pk=ready.pk).status == "stopped"


def test_fifty_parallel_creates_admit_exactly_what_the_rule_allows(
    catalog: Any, api_client: APIClient, tenant: Any, api_key: str, sent_tasks: Any
) -> None:
    """Limit: five hours of one instance's rate, nothing spent: the rule admits five."""
    if connection.vendor != "postgresql":
        pytest.skip("parallel writers: Postgres")
    put(api_client, {"monthly_limit_usd": str(5 * RATE)})
    assert create(api_client, create_body(name="warm")).status_code == 202  # caches filled
    statuses: list[int] = []
    start = threading.Barrier(50)

    def one(i: int) -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
            start.wait()
            statuses.append(create(client, create_body(name=f"p{i}")).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [202, 402]
    assert statuses.count(202) == 4  # and "warm": five in all
    assert Instance.objects.filter(tenant=tenant).count() == 5
