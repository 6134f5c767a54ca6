"""The ledger fed by the monitoring pass against the sandbox: prices captured at create, a
compute segment from the first billed status seen, the disk while stopped, nothing once gone."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.ledger import usd6
from billing.models import Account, Segment
from instances.models import Instance
from instances.selectors import instance_representation
from tests.instances.helpers import monitor_until, provision

pytestmark = pytest.mark.django_db(transaction=True)


def phases(instance: Instance) -> list[tuple[str, int, int, bool]]:
    return [
        (s.phase, s.unit_price, s.units, s.ended_at is None)
        for s in Segment.objects.filter(instance_id=instance.pk).order_by("started_at")
    ]


@pytest.mark.parametrize(("mode", "price"), [("on_demand", 34000), ("spot", 17000)])
def test_prices_are_captured_at_create(make: Any, mode: str, price: int) -> None:
    instance = provision(make(billing_mode=mode))
    account = Account.objects.get(pk=instance.pk)
    assert (account.compute_price, account.gpu_num, account.disk_price, account.disk_gb) == (
        price,
        1,
        500,
        60,
    )
    ready = monitor_until(instance, "ready")
    assert phases(ready) == [("compute", price, 1, True)]
    body = instance_representation(ready)
    assert Decimal(body["cost_rate_usd_per_hour"]) == Decimal(price) / 100000
    assert Decimal(body["cost_usd"]) > 0


def run_action(instance: Instance) -> None:
    from instances.actions import instance_action_run

    instance_action_run(job_id=str(Instance.objects.get(pk=instance.pk).current_job_id))


def test_stopped_bills_its_disk_and_deleted_nothing(make: Any) -> None:
    from instances.services import instance_action_request, instance_delete_request

    ready = monitor_until(provision(make()), "ready")
    instance_action_request(instance_id=ready.pk, tenant=None, action="stop", actor="test")
    run_action(ready)
    stopped = monitor_until(ready, "stopped")
    assert phases(stopped) == [("compute", 34000, 1, False), ("disk", 500, 60, True)]
    assert instance_representation(stopped)["cost_rate_usd_per_hour"] == "0.012500"
    instance_delete_request(instance_id=ready.pk, tenant=None, actor="test")
    run_action(ready)
    gone = monitor_until(ready, "terminated")
    assert [p[3] for p in phases(gone)] == [False, False]
    body = instance_representation(gone)
    assert body["cost_rate_usd_per_hour"] == "0.000000"
    account = Account.objects.get(pk=gone.pk)
    assert (account.phase, account.closed_at is not None) == ("", True)
    assert Decimal(body["cost_usd"]) == usd6(account.accrued_usd)
