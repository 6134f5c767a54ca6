"""End to end, money: three instances (on demand, spot, one stopped once ready) run for a minute
against the sandbox with a real worker; each one's cost_usd agrees with what the sandbox's
bill/list charges for it (within 1 %, or $0.0005), and the reconciliation finds no drift."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.money import ledger_reconcile_run
from novita_sandbox.control import SandboxControl
from novitai.novita.client import get_client
from tests.e2e.conftest import Worker
from tests.e2e.test_lifecycle import act, until
from tests.instances.conftest import create, create_body
from tests.instances.helpers import wait_for

pytestmark = [pytest.mark.e2e]

RUN_SECONDS = 60


def billed_usd(owner_id: str, start: int, end: int) -> Decimal:
    """What the sandbox charges the owner over [start, end): its hourly rows, each rounded."""
    bills = get_client().list_bills(
        cycle_type="Hour", start_time=start, end_time=end, owner_id=owner_id
    )
    return sum((bill.amount_usd for bill in bills), Decimal(0))


def close_enough(cost: Decimal, billed: Decimal) -> bool:
    return abs(cost - billed) <= max(billed * Decimal("0.01"), Decimal("0.0005"))


def test_three_instances_cost_what_the_sandbox_bills(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    started = time.time()
    ids: dict[str, str] = {}
    for name, overrides in (
        ("money-on-demand", {}),
        ("money-spot", {"billing_mode": "spot"}),
        ("money-stopped", {}),
    ):
        response = create(api_client, create_body(name=name, **overrides))
        assert response.status_code == 202, response.content
        ids[name] = response.json()["id"]
    for instance_id in ids.values():
        until(api_client, instance_id, "ready")
    act(api_client, ids["money-stopped"], "stop")
    stopped = until(api_client, ids["money-stopped"], "stopped")
    wait_for(lambda: time.time() - started >= RUN_SECONDS, RUN_SECONDS + 30, interval=0.5)

    running = api_client.get(f"/api/v1/instances/{ids['money-on-demand']}/").json()
    assert Decimal(running["cost_rate_usd_per_hour"]) == Decimal("0.34")  # 34000 x 1 card
    # Its disk: 60 GB at 500 (1/100000 USD per GB-day) = $0.30 a day.
    assert stopped["cost_rate_usd_per_hour"] == "0.012500"
    for instance_id in ids.values():
        act(api_client, instance_id, "delete")
    final: dict[str, dict[str, Any]] = {
        name: until(api_client, instance_id, "terminated") for name, instance_id in ids.items()
    }
    end = int(time.time()) + 1
    for name, body in final.items():
        assert body["cost_rate_usd_per_hour"] == "0.000000"
        billed = billed_usd(body["novita_instance_id"], int(started) - 5, end)
        assert billed > 0
        assert close_enough(Decimal(body["cost_usd"]), billed), (name, body["cost_usd"], billed)
    # The reconciliation finds no drift over the whole run.
    window = (datetime.fromtimestamp(started - 5, UTC), datetime.fromtimestamp(end, UTC))
    assert ledger_reconcile_run(start=window[0], end=window[1]) == []
