"""Waiting for capacity: the provision task and the capacity sweep called directly, against the
sandbox over HTTP (its capacity switches); the worker-driven runs are in tests/e2e."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.services import catalog_sync
from instances.capacity import instances_capacity_sweep
from instances.models import Instance
from instances.selectors import instance_representation
from jobs.models import JobStatus
from novita_sandbox.control import SandboxControl
from tenants.models import Tenant
from tests.instances.conftest import create, create_body
from tests.instances.helpers import provision, reasons, reload

PRODUCT_ID = "4090.16c62g.sim"


@pytest.fixture
def no_capacity(catalog: SandboxControl) -> SandboxControl:
    """The 4090 has no capacity anywhere, and the catalog has seen it."""
    catalog.set_capacity(PRODUCT_ID, False)
    assert catalog_sync().outcome == "success"
    return catalog


def job_status(instance: Instance) -> str:
    assert instance.current_job is not None
    return instance.current_job.status


def waiting(make: Any, **overrides: Any) -> Instance:
    instance = provision(make(**{"capacity_wait_seconds": 600, **overrides}))
    assert instance.status == "waiting_for_capacity"
    return instance


@pytest.mark.parametrize("value", [-1, 86401, "60", 1.5, True])
def test_capacity_wait_seconds_must_be_0_to_86400(
    api_client: APIClient, catalog: SandboxControl, value: Any
) -> None:
    response = create(api_client, create_body(capacity_wait_seconds=value))
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["capacity_wait_seconds"]
    assert Instance.objects.count() == 0


def test_without_a_wait_no_capacity_is_refused_at_once(
    api_client: APIClient, no_capacity: SandboxControl
) -> None:
    response = create(api_client, create_body())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_offer_available"
    assert Instance.objects.count() == 0


def test_no_capacity_waits_and_a_sync_showing_it_brings_it_back(
    make: Any, no_capacity: SandboxControl
) -> None:
    instance = waiting(make)
    assert job_status(instance) == JobStatus.WAITING
    assert instance.capacity_attempts == 1
    assert instance.waiting_since is not None
    assert no_capacity.stats()["creates_by_name"] == {}
    # Nothing in the catalog: the sweep tries nothing, even once its backoff is over.
    report = instances_capacity_sweep(now=instance.waiting_since + timedelta(seconds=30))
    assert (report.waiting, report.attempts) == (1, 0)
    assert no_capacity.stats()["creates_by_name"] == {}

    no_capacity.set_capacity(PRODUCT_ID, True)
    assert catalog_sync().outcome == "success"
    report = instances_capacity_sweep()
    assert (report.attempts, report.obtained) == (1, 1)
    instance = reload(instance)
    assert instance.status == "starting"
    assert instance.next_attempt_at is None
    assert reasons(instance)[-3:] == ["waiting_for_capacity", "capacity_retry", "created"]


def test_the_deadline_fails_it_naming_the_wait(make: Any, no_capacity: SandboxControl) -> None:
    instance = waiting(make, capacity_wait_seconds=60)
    assert instance.waiting_since is not None
    report = instances_capacity_sweep(now=instance.waiting_since + timedelta(seconds=60))
    assert report.expired == 1
    instance = reload(instance)
    assert instance.status == "failed"
    assert instance.failure_reason == "no_capacity"
    assert "Waited 60s for capacity (of 60s allowed, 1 attempt(s))." in instance.failure_message
    assert job_status(instance) == JobStatus.FAILED


def test_a_patch_extends_the_wait(
    api_client: APIClient, make: Any, no_capacity: SandboxControl
) -> None:
    instance = waiting(make, capacity_wait_seconds=60)
    response = api_client.patch(
        f"/api/v1/instances/{instance.pk}/", {"capacity_wait_seconds": 3600}, format="json"
    )
    assert response.status_code == 200, response.content
    assert instance.waiting_since is not None
    until = (instance.waiting_since + timedelta(seconds=3600)).isoformat()
    assert response.json()["capacity_wait_until"] == until.replace("+00:00", "Z")
    report = instances_capacity_sweep(now=instance.waiting_since + timedelta(seconds=61))
    assert report.expired == 0
    assert reload(instance).status == "waiting_for_capacity"
    bad = api_client.patch(
        f"/api/v1/instances/{instance.pk}/", {"capacity_wait_seconds": -5}, format="json"
    )
    assert bad.status_code == 400
    assert "capacity_wait_seconds" in bad.json()["error"]["details"]


def test_a_delete_terminates_it_at_once_without_a_call(
    api_client: APIClient, make: Any, no_capacity: SandboxControl
) -> None:
    instance = waiting(make)
    before = no_capacity.stats()["calls"]
    response = api_client.delete(f"/api/v1/instances/{instance.pk}/")
    assert response.status_code == 202
    assert response.json()["status"] == "terminated"
    assert no_capacity.stats()["calls"] == before
    instance = reload(instance)
    assert instance.terminated_at is not None
    assert job_status(instance) == JobStatus.CANCELLED
    assert instances_capacity_sweep().waiting == 0


def test_it_counts_toward_the_instance_quota_not_the_gpu_quota(
    api_client: APIClient, make: Any, tenant: Tenant, no_capacity: SandboxControl
) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(max_gpus=1, max_instances=2)
    waiting(make, name="first")
    second = create(api_client, create_body(name="second", capacity_wait_seconds=600))
    assert second.status_code == 202, second.content  # the waiting one holds no GPU
    third = create(api_client, create_body(name="third", capacity_wait_seconds=600))
    assert third.status_code == 409
    assert third.json()["error"]["details"]["max_instances"] == 2


def test_fifo_within_a_queue_and_one_attempt_per_queue_without_capacity(
    make: Any, no_capacity: SandboxControl
) -> None:
    first = waiting(make, name="q-1")
    second = waiting(make, name="q-2")
    # The catalog lies: it shows capacity, creates fail. The oldest tries; the younger waits.
    no_capacity.set_capacity(PRODUCT_ID, True)
    assert catalog_sync().outcome == "success"
    no_capacity.set_faults(capacity_errors={"*": -1})
    report = instances_capacity_sweep()
    assert (report.attempts, report.obtained) == (1, 0)
    assert reload(first).capacity_attempts == 2
    assert reload(second).capacity_attempts == 1
    assert reload(first).status == reload(second).status == "waiting_for_capacity"
    creates = no_capacity.stats()["calls"].get("POST /gpu/instance/create", {})
    assert creates == {"400": 3}  # every region of the 4090, once


# --- spot → on-demand fallback -------------------------------------------------------------------


@pytest.fixture
def no_spot(catalog: SandboxControl) -> SandboxControl:
    catalog.set_capacity(PRODUCT_ID, False, billing_mode="spot")
    return catalog


def test_spot_falls_back_to_on_demand(make: Any, no_spot: SandboxControl) -> None:
    instance = provision(make(billing_mode="spot", spot_fallback="on_demand"))
    assert instance.status == "starting"
    assert (instance.billing_mode, instance.billing_mode_requested) == ("on_demand", "spot")
    assert [i["billingMode"] for i in no_spot.instances()] == ["onDemand"]
    event = instance.events.get(reason="spot_fallback")
    assert event.message.startswith("No capacity in the 3 offer(s) tried: RTX 4090 24GB in ")
    assert event.message.endswith(
        "No spot offer can be had: trying on-demand offers (spot_fallback on_demand)."
    )
    body = instance_representation(instance)
    assert (body["billing_mode"], body["billing_mode_requested"]) == ("on_demand", "spot")
    assert body["spot_fallback"] == "on_demand"


def test_the_fallback_keeps_to_the_max_price_then_waits(make: Any, no_spot: SandboxControl) -> None:
    # The 4090: 0.17 USD/h as spot, 0.34 on demand.
    instance = provision(
        make(
            billing_mode="spot",
            spot_fallback="on_demand",
            max_price_per_hour="0.20",
            capacity_wait_seconds=600,
        )
    )
    assert instance.status == "waiting_for_capacity"
    assert instance.billing_mode == "on_demand"
    # Spot in the 3 regions of the 4090; on demand costs too much.
    assert no_spot.stats()["calls"]["POST /gpu/instance/create"] == {"400": 3}
    # Tried again: spot first once more.
    no_spot.set_capacity(PRODUCT_ID, True, billing_mode="spot")
    assert catalog_sync().outcome == "success"
    assert instances_capacity_sweep().obtained == 1
    instance = reload(instance)
    assert (instance.status, instance.billing_mode) == ("starting", "spot")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"spot_fallback": "on_demand"}, "spot_fallback"),  # an on-demand request
        ({"billing_mode": "spot", "spot_fallback": "monthly"}, "spot_fallback"),
        ({"billing_mode": "spot", "spot_fallback": 1}, "spot_fallback"),
    ],
)
def test_bad_spot_fallback_is_a_400(
    api_client: APIClient, catalog: SandboxControl, body: dict[str, Any], field: str
) -> None:
    response = create(api_client, create_body(**body))
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == [field]
    assert Instance.objects.count() == 0
