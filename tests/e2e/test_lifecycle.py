"""End to end: the API in this process, a real Celery worker (and beat) in another, the sandbox
over HTTP. Each test polls with a deadline for states; none sleeps a fixed time."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.models import InstanceEvent
from novita_sandbox.control import SandboxControl
from tests.e2e.conftest import Worker
from tests.instances.conftest import create, create_body
from tests.instances.helpers import wait_for

pytestmark = [pytest.mark.e2e]


def status_of(client: APIClient, instance_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/instances/{instance_id}/")
    assert response.status_code == 200
    return response.json()


def until(
    client: APIClient, instance_id: str, *statuses: str, timeout: float = 30
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = status_of(client, instance_id)
        if body["status"] in statuses:
            return body
        if body["status"] == "failed" and "failed" not in statuses:
            raise AssertionError(f"failed: {body['failure_reason']}: {body['failure_message']}")
        return None

    found = wait_for(reached, timeout, interval=0.1, what=f"{instance_id} to be {statuses}")
    assert found is not None
    return found


def act(client: APIClient, instance_id: str, verb: str) -> None:
    path = f"/api/v1/instances/{instance_id}/"
    response = client.delete(path) if verb == "delete" else client.post(f"{path}{verb}/")
    assert response.status_code == 202, response.content


def test_create_stop_start_delete(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    response = create(api_client, create_body(name="e2e-lifecycle"))
    assert response.status_code == 202
    instance_id = response.json()["id"]
    ready = until(api_client, instance_id, "ready")
    assert ready["endpoints"][0]["port"] == 8188
    assert ready["endpoints"][0]["healthy"] is True
    assert ready["endpoints"][0]["url"].startswith("http://")
    assert ready["novita_instance_id"]
    assert ready["job"]["status"] == "succeeded"

    act(api_client, instance_id, "stop")
    stopped = until(api_client, instance_id, "stopped")
    assert stopped["stopped_at"] is not None
    act(api_client, instance_id, "start")
    assert until(api_client, instance_id, "ready")["job"]["kind"] == "start"
    act(api_client, instance_id, "delete")
    act(api_client, instance_id, "delete")  # idempotent
    gone = until(api_client, instance_id, "terminated")
    assert gone["terminated_at"] is not None
    assert gone["job"]["kind"] == "delete"
    assert gone["job"]["status"] == "succeeded"
    assert sandbox.stats()["live_instances"] == 0
    assert sandbox.stats()["creates_by_name"] == {f"novitai-{instance_id.replace('-', '')[:12]}": 1}


def test_capacity_errors_fall_back_to_the_next_region(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(capacity_errors={"eu-nl-1": -1})
    response = create(api_client, create_body(name="e2e-fallback", region="EU-NL-01"))
    instance_id = response.json()["id"]
    ready = until(api_client, instance_id, "ready")
    assert ready["region"] != "EU-NL-01"
    events = api_client.get(f"/api/v1/instances/{instance_id}/events/").json()["results"]
    attempts = [(e["reason"], e["details"].get("region")) for e in events if e["details"]]
    assert ("offer_no_capacity", "EU-NL-01") in attempts
    assert ("created", ready["region"]) in attempts


def test_a_lost_create_answer_gives_one_upstream_instance(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(lose_create_answers=1, lose_create_mode="close")
    response = create(api_client, create_body(name="e2e-lost"))
    instance_id = response.json()["id"]
    until(api_client, instance_id, "ready")
    name = f"novitai-{instance_id.replace('-', '')[:12]}"
    assert sandbox.stats()["creates_by_name"] == {name: 1}
    assert sandbox.stats()["live_instances"] == 1
    assert InstanceEvent.objects.filter(reason="create_outcome_unknown").count() == 1


def test_an_app_that_never_answers_fails_and_is_deleted(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(unhealthy_name="novitai-*")
    response = create(api_client, create_body(name="e2e-unhealthy"))
    instance_id = response.json()["id"]
    failed = until(api_client, instance_id, "failed")
    assert failed["failure_reason"] == "health_check_timeout"
    wait_for(
        lambda: sandbox.stats()["live_instances"] == 0, 30, interval=0.1, what="upstream deleted"
    )


def test_the_same_post_twice_with_one_key(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    body = create_body(name="e2e-idempotent")
    first = create(api_client, body, key="e2e-key-1")
    second = create(api_client, body, key="e2e-key-1")
    assert first.status_code == second.status_code == 202
    assert first.content == second.content
    other = create(api_client, create_body(name="e2e-other"), key="e2e-key-1")
    assert other.status_code == 422
    until(api_client, first.json()["id"], "ready")
    assert api_client.get("/api/v1/instances/").json()["count"] == 1
    assert len(sandbox.stats()["creates_by_name"]) == 1


def test_a_reclaimed_spot_instance_is_replaced(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    body = create_body(name="e2e-spot", billing_mode="spot", on_preempt="reprovision")
    instance_id = create(api_client, body).json()["id"]
    first = until(api_client, instance_id, "ready")
    sandbox.reclaim(first["novita_instance_id"])
    # preempted, then pending → … → ready again on a new upstream instance, without any call.
    again = wait_for(
        lambda: (
            (b := status_of(api_client, instance_id))["recoveries"] == 1
            and b["status"] == "ready"
            and b
        ),
        60,
        interval=0.1,
        what="a replacement to be ready",
    )
    assert again["novita_instance_id"] != first["novita_instance_id"]
    events = api_client.get(f"/api/v1/instances/{instance_id}/events/").json()["results"]
    assert [e["to_status"] for e in events][-6:] == [
        "preempted",
        "pending",
        "provisioning",
        "starting",
        "health_checking",
        "ready",
    ]
    wait_for(
        lambda: sandbox.stats()["live_instances"] == 1, 30, interval=0.1, what="the old deleted"
    )
