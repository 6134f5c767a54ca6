"""End to end: waiting for capacity (issue 16). The API here, a real worker (with beat: the
capacity sweep every 0.5 s, backoff 1-2 s), the sandbox over HTTP with its capacity switches.
The catalog syncs beat would run every CATALOG_SYNC_INTERVAL are run here, when the test needs
one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.services import catalog_sync
from instances.models import Instance, InstanceEvent
from novita_sandbox.control import SandboxControl
from tests.e2e.conftest import Worker
from tests.e2e.test_lifecycle import status_of, until
from tests.instances.conftest import create, create_body
from tests.instances.helpers import wait_for
from tests.webhooks.support import Receiver

pytestmark = [pytest.mark.e2e]

PRODUCT_ID = "4090.16c62g.sim"  # RTX 4090 24GB: us-tx-2, us-ca-6, eu-nl-1
CREATE = ("POST", "/gpu/instance/create")
LIST = ("GET", "/gpu/instances")


@pytest.fixture
def receiver(settings: Any) -> Any:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    server = Receiver()
    yield server
    server.close()


def hook_types(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.requests]


def calls_since(sandbox: SandboxControl, since: float) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in sandbox.calls(since)]


def sweeps_pass(instance_id: str, n: int = 2) -> None:
    """Until its backoff has run out n times over (the sweep has looked at it again since)."""
    row = Instance.objects.get(pk=instance_id)
    assert row.next_attempt_at is not None
    step = row.next_attempt_at - row.updated_at
    later = row.next_attempt_at + step * (n - 1)
    wait_for(lambda: timezone.now() > later, 30, interval=0.1, what="backoffs to run out")


def test_capacity_off_waits_then_becomes_ready_when_it_returns(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl, receiver: Receiver
) -> None:
    sandbox.set_capacity(PRODUCT_ID, False)
    assert catalog_sync().outcome == "success"  # the catalog shows it unavailable everywhere
    body = create_body(name="e2e-wait", capacity_wait_seconds=600, webhook_url=receiver.url())
    response = create(api_client, body)
    assert response.status_code == 202, response.content
    instance_id = response.json()["id"]
    waiting = until(api_client, instance_id, "waiting_for_capacity")
    assert waiting["capacity_wait_seconds"] == 600
    assert waiting["capacity_wait_until"] is not None
    assert waiting["novita_instance_id"] is None
    since = sandbox.clock()["now"]
    sweeps_pass(instance_id)
    # Waiting costs no upstream call (the catalog shows nothing to try): only the monitoring
    # pass's listing, which runs with or without waiting instances.
    assert set(calls_since(sandbox, since)) <= {LIST}
    assert status_of(api_client, instance_id)["status"] == "waiting_for_capacity"

    sandbox.set_capacity(PRODUCT_ID, True)
    assert catalog_sync().outcome == "success"  # the ordinary sync that shows it again
    ready = until(api_client, instance_id, "ready")
    assert ready["endpoints"][0]["healthy"] is True
    assert sandbox.stats()["creates_by_name"] == {Instance.objects.get().novita_name: 1}
    wait_for(lambda: "instance.ready" in hook_types(receiver), 20, interval=0.1, what="ready hook")
    assert hook_types(receiver).count("instance.waiting_for_capacity") == 1
    assert hook_types(receiver).count("instance.ready") == 1
    reasons = list(
        InstanceEvent.objects.filter(instance_id=instance_id).values_list("reason", flat=True)
    )
    assert reasons[:5] == [
        "requested",
        "provisioning_started",
        "waiting_for_capacity",
        "capacity_retry",
        "created",
    ]


def test_the_wait_runs_out_into_no_capacity(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    # The catalog says available, every create fails: the attempts are the only calls.
    sandbox.set_faults(capacity_errors={"*": -1})
    response = create(api_client, create_body(name="e2e-wait-out", capacity_wait_seconds=5))
    assert response.status_code == 202, response.content
    instance_id = response.json()["id"]
    until(api_client, instance_id, "waiting_for_capacity")
    failed = until(api_client, instance_id, "failed", timeout=40)
    assert failed["failure_reason"] == "no_capacity"
    message = failed["failure_message"]
    assert "for capacity (of 5s allowed" in message
    assert "RTX 4090 24GB in " in message  # what it tried
    row = Instance.objects.get(pk=instance_id)
    assert row.capacity_attempts >= 2
    failed_at = row.events.get(reason="no_capacity").at
    assert row.waiting_since is not None
    assert (failed_at - row.waiting_since).total_seconds() >= 5
    # Every create call is one of its attempts' offers; nothing else but the template fetch.
    no_capacity = row.events.filter(reason="offer_no_capacity").count()
    calls = calls_since(sandbox, 0)
    assert calls.count(CREATE) == no_capacity
    assert {c for c in calls if c != CREATE} <= {
        ("GET", "/template"),  # once, then cached
        ("GET", "/clusters"),  # the first catalog sync
        ("GET", "/products"),
        LIST,  # the monitoring pass (every MONITOR_INTERVAL, waiting instances or not)
    }


def test_capacity_for_five_goes_to_the_five_oldest_of_two_tenants(
    worker: Worker,
    api_client: APIClient,
    other_tenant_client: APIClient,
    sandbox: SandboxControl,
) -> None:
    sandbox.set_capacity(PRODUCT_ID, False)
    assert catalog_sync().outcome == "success"
    ids: list[str] = []
    for n in range(20):
        client = api_client if n % 2 == 0 else other_tenant_client
        response = create(client, create_body(name=f"e2e-queue-{n}", capacity_wait_seconds=600))
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    wait_for(
        lambda: Instance.objects.filter(status="waiting_for_capacity").count() == 20,
        40,
        interval=0.2,
        what="20 instances waiting",
    )
    assert sandbox.stats()["creates_by_name"] == {}

    sandbox.set_capacity(PRODUCT_ID, True, creates=5)
    assert catalog_sync().outcome == "success"
    wait_for(
        lambda: Instance.objects.filter(status="ready").count() == 5,
        60,
        interval=0.2,
        what="5 instances ready",
    )
    oldest = Instance.objects.order_by("created_at", "id")
    assert [str(i.pk) for i in oldest[:5]] == ids[:5]
    got = set(Instance.objects.filter(status="ready").values_list("pk", flat=True))
    assert {str(pk) for pk in got} == set(ids[:5])
    assert set(Instance.objects.exclude(pk__in=got).values_list("status", flat=True)) <= {
        "waiting_for_capacity",
        "provisioning",
    }

    # A waiting instance is deleted at once, with no upstream call.
    wait_for(
        lambda: Instance.objects.get(pk=ids[19]).status == "waiting_for_capacity",
        20,
        interval=0.1,
        what="the youngest waiting",
    )
    since = sandbox.clock()["now"]
    response = other_tenant_client.delete(f"/api/v1/instances/{ids[19]}/")
    assert response.status_code == 202
    assert response.json()["status"] == "terminated"
    assert [c for c in calls_since(sandbox, since) if c[0] == "DELETE" or "delete" in c[1]] == []


def test_spot_off_falls_back_to_on_demand(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    sandbox.set_capacity(PRODUCT_ID, False, billing_mode="spot")
    body = create_body(name="e2e-fallback-od", billing_mode="spot", spot_fallback="on_demand")
    response = create(api_client, body)
    assert response.status_code == 202, response.content
    assert response.json()["billing_mode_requested"] == "spot"
    instance_id = response.json()["id"]
    ready = until(api_client, instance_id, "ready")
    assert (ready["billing_mode"], ready["billing_mode_requested"]) == ("on_demand", "spot")
    assert [i["billingMode"] for i in sandbox.instances()] == ["onDemand"]
    event = InstanceEvent.objects.get(instance_id=instance_id, reason="spot_fallback")
    assert "No spot offer can be had: trying on-demand offers" in event.message
