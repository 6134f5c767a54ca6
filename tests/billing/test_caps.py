"""Spend caps and lifetimes: the create body and PATCH, the money sweep acting once each (the
warning, the cap, the expiry) with its events and webhooks in order, and bad input as 400s
naming the field, with nothing changed."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from instances.models import Instance
from instances.money import instances_money_sweep
from tests.instances.conftest import create, create_body
from tests.instances.helpers import monitor_until, provision, reasons
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)
HOOK = "https://hooks.example.com/novitai"


def hooks(instance: Instance) -> list[str]:
    return list(
        WebhookDelivery.objects.filter(instance_id=instance.pk)
        .order_by("created_at", "event_id")
        .values_list("event_type", flat=True)
    )


def test_ttl_warns_then_deletes(make: Any) -> None:
    before = timezone.now()
    instance = make(ttl_seconds=3600, webhook_url=HOOK)
    assert instance.expires_at is not None
    assert before + timedelta(seconds=3600) <= instance.expires_at
    assert instance.expires_at - timedelta(seconds=600) == instance.money_due_at
    expires = instance.expires_at
    assert instances_money_sweep(expires - timedelta(seconds=601)).due == 0
    report = instances_money_sweep(expires - timedelta(seconds=600))
    assert (report.due, report.warned, report.expired) == (1, 1, 0)
    assert instances_money_sweep(expires - timedelta(seconds=1)).due == 0  # warned once
    report = instances_money_sweep(expires)
    assert (report.due, report.expired) == (1, 1)
    gone = Instance.objects.get(pk=instance.pk)
    assert gone.status == "terminating"
    assert reasons(gone)[-2:] == ["expiring", "expired"]
    assert hooks(gone) == ["instance.expiring"]
    assert instances_money_sweep(expires + timedelta(hours=1)).due == 0


def test_patch_moves_the_expiry(make: Any, api_client: APIClient) -> None:
    instance = make(ttl_seconds=3600, on_expire="stop")
    later = timezone.now() + timedelta(hours=5)
    response = api_client.patch(
        f"/api/v1/instances/{instance.pk}/", {"expires_at": later.isoformat()}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["expires_at"] == later.isoformat().replace("+00:00", "Z")
    assert instances_money_sweep(timezone.now() + timedelta(hours=1)).due == 0
    assert instances_money_sweep(later - timedelta(seconds=600)).warned == 1
    cleared = api_client.patch(
        f"/api/v1/instances/{instance.pk}/", {"expires_at": None}, format="json"
    )
    assert cleared.json()["expires_at"] is None
    assert Instance.objects.get(pk=instance.pk).money_due_at is None


def test_max_spend_stops_once_reached(make: Any, api_client: APIClient) -> None:
    ready = monitor_until(provision(make(webhook_url=HOOK)), "ready")
    response = api_client.patch(
        f"/api/v1/instances/{ready.pk}/", {"max_spend_usd": "0.01"}, format="json"
    )
    assert response.json()["max_spend_usd"] == "0.01"
    row = Instance.objects.get(pk=ready.pk)
    # $0.34 an hour: $0.01 takes about 106 s from when compute began.
    assert row.cost_since is not None
    assert row.money_due_at is not None
    due = row.money_due_at
    left = Decimal("0.01") - row.cost_accrued_usd
    assert abs((due - row.cost_since).total_seconds() - float(left / Decimal("0.34") * 3600)) < 1
    assert instances_money_sweep(due - timedelta(seconds=1)).due == 0
    report = instances_money_sweep(due + timedelta(seconds=1))
    assert (report.due, report.capped) == (1, 1)
    stopped = Instance.objects.get(pk=ready.pk)
    assert stopped.status == "stopping"
    assert reasons(stopped)[-2:] == ["max_spend_reached", "spend_limit_reached"]
    assert hooks(stopped) == ["instance.ready", "instance.spend_limit_reached"]
    assert stopped.spend_limit_reached_at is not None
    assert instances_money_sweep(due + timedelta(hours=1)).due == 0


def test_a_sweep_costs_the_same_queries_whatever_the_instances(make: Any) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            instances_money_sweep(timezone.now())
        return len(ctx.captured_queries)

    make(name="a", ttl_seconds=7200)
    one = queries()
    for i in range(5):
        make(name=f"b{i}", ttl_seconds=7200, max_spend_usd="5.00")
    assert queries() == one == 2  # the budgets, the due instances


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_spend_usd": "-1"}, "max_spend_usd"),
        ({"max_spend_usd": "ten"}, "max_spend_usd"),
        ({"max_spend_usd": "1.234"}, "max_spend_usd"),
        ({"on_max_spend": "pause"}, "on_max_spend"),
        ({"ttl_seconds": 59}, "ttl_seconds"),
        ({"ttl_seconds": 90 * 86400 + 1}, "ttl_seconds"),
        ({"ttl_seconds": "soon"}, "ttl_seconds"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"ttl_seconds": 600, "expires_at": "2099-01-01T00:00:00Z"}, "ttl_seconds"),
        ({"on_expire": "explode"}, "on_expire"),
    ],
)
def test_bad_money_input_names_the_field(
    api_client: APIClient, catalog: Any, make: Any, body: dict[str, Any], field: str
) -> None:
    response = create(api_client, create_body(name="bad", **body))
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not Instance.objects.filter(name="bad").exists()
    instance = make(name="good")
    patched = api_client.patch(f"/api/v1/instances/{instance.pk}/", body, format="json")
    assert patched.status_code == 400, patched.content
    assert field in patched.json()["error"]["details"]
    fresh = Instance.objects.get(pk=instance.pk)
    assert (fresh.max_spend_usd, fresh.expires_at, fresh.on_expire) == (None, None, "delete")
