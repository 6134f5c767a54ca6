"""List, retrieve, events, start/stop/restart/delete through the API: tenancy and states."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.models import Instance, InstanceEvent, InstanceStatus
from jobs.models import Job, JobStatus
from novita_sandbox.control import SandboxControl
from tests.instances.conftest import create, create_body
from tests.jobs.conftest import SentTasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def made(api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks) -> Instance:
    assert create(api_client).status_code == 202
    sent_tasks.clear()
    return Instance.objects.get()


def set_status(instance: Instance, status: str, **fields: Any) -> None:
    Instance.objects.filter(pk=instance.pk).update(status=status, **fields)


def test_list_is_newest_first_and_filtered(
    api_client: APIClient, other_tenant_client: APIClient, catalog: SandboxControl
) -> None:
    for name in ("a", "b", "c"):
        assert create(api_client, create_body(name=name)).status_code == 202
    assert create(other_tenant_client, create_body(name="theirs")).status_code == 202
    Instance.objects.filter(name="b").update(status="ready", region="EU-NL-01")
    body = api_client.get("/api/v1/instances/").json()
    assert [i["name"] for i in body["results"]] == ["c", "b", "a"]
    assert body["count"] == 3

    def names(**params: str) -> list[str]:
        return [i["name"] for i in api_client.get("/api/v1/instances/", params).json()["results"]]

    assert names(status="ready") == ["b"]
    assert names(status="ready,pending") == ["c", "b", "a"]
    assert names(name="a") == ["a"]
    assert names(region="eu-nl-01") == ["b"]
    bad = api_client.get("/api/v1/instances/", {"status": "asleep"})
    assert bad.status_code == 400
    assert "status" in bad.json()["error"]["details"]
    assert names(status=" ready , pending") == ["c", "b", "a"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": ""}, "status"),
        ({"status": "ready,"}, "status"),
        ({"status": ",,"}, "status"),
        ({"name": ""}, "name"),
        ({"region": ""}, "region"),
    ],
)
def test_blank_filters_are_400(api_client: APIClient, params: dict[str, str], field: str) -> None:
    # Blank values (and empty items in the status list) were dropped silently and answered 200
    # with every instance; found by fuzzing.
    response = api_client.get("/api/v1/instances/", params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["details"]) == {field}


def test_a_page_costs_the_same_queries_whatever_its_size(
    api_client: APIClient, catalog: SandboxControl, django_assert_num_queries: Any
) -> None:
    for n in range(6):
        assert create(api_client, create_body(name=f"q{n}")).status_code == 202
    Instance.objects.filter(name="q1").update(
        status="ready",
        endpoints=[{"port": 8188, "type": "http", "url": "http://x/", "healthy": True}],
    )
    # The key's lookup, the count, the page (with each row's job): no query per row.
    for size in (2, 6):
        with django_assert_num_queries(3):
            body = api_client.get("/api/v1/instances/", {"page_size": size}).json()
        assert len(body["results"]) == size
    ready = api_client.get("/api/v1/instances/", {"name": "q1"}).json()["results"][0]
    assert ready["endpoints"] == [
        {"port": 8188, "type": "http", "url": "http://x/", "healthy": True}
    ]
    assert ready["job"]["kind"] == "provision"


def test_retrieve_and_tenancy(
    api_client: APIClient, other_tenant_client: APIClient, staff_client: APIClient, made: Instance
) -> None:
    path = f"/api/v1/instances/{made.pk}/"
    assert api_client.get(path).json()["id"] == str(made.pk)
    assert staff_client.get(path).status_code == 200
    for client, target in (
        (other_tenant_client, path),
        (api_client, f"/api/v1/instances/{uuid.uuid4()}/"),
        (api_client, "/api/v1/instances/not-a-uuid/"),
        (other_tenant_client, f"{path}events/"),
    ):
        response = client.get(target)
        assert response.status_code == 404, target
        assert response.json()["error"]["code"] == "instance_not_found"
    for verb in ("start", "stop", "restart"):
        assert other_tenant_client.post(f"{path}{verb}/").status_code == 404
    assert other_tenant_client.delete(path).status_code == 404
    assert Instance.objects.get().status == InstanceStatus.PENDING
    assert staff_client.get("/api/v1/instances/").json()["count"] == 1


def test_actions_the_status_does_not_allow_are_409(
    api_client: APIClient, made: Instance, sent_tasks: SentTasks
) -> None:
    path = f"/api/v1/instances/{made.pk}/"
    for verb in ("start", "stop", "restart"):
        response = api_client.post(f"{path}{verb}/")
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "invalid_instance_state"
        assert error["details"]["status"] == "pending"
        assert "pending" in error["message"]
    assert Job.objects.count() == 1
    assert sent_tasks.calls == []


def test_stop_then_start_then_restart_are_jobs(
    api_client: APIClient,
    made: Instance,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
) -> None:
    path = f"/api/v1/instances/{made.pk}/"
    set_status(made, InstanceStatus.READY, novita_instance_id="abc")
    Job.objects.update(status=JobStatus.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(f"{path}stop/")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "stopping"
    assert body["job"]["kind"] == "stop"
    stop_job = Job.objects.get(kind="stop")
    assert sent_tasks.names_and_args == [("instances.action", [str(stop_job.pk)])]
    assert api_client.post(f"{path}stop/").status_code == 409  # already stopping

    set_status(made, InstanceStatus.STOPPED)
    assert api_client.post(f"{path}start/").json()["status"] == "starting"
    set_status(made, InstanceStatus.READY)
    assert api_client.post(f"{path}restart/").json()["status"] == "restarting"
    events = api_client.get(f"{path}events/").json()["results"]
    assert [(e["from_status"], e["to_status"], e["reason"]) for e in events] == [
        (None, "pending", "requested"),
        ("ready", "stopping", "stop_requested"),
        ("stopped", "starting", "start_requested"),
        ("ready", "restarting", "restart_requested"),
    ]
    assert {e["actor"] for e in events} == {"tenant:acme"}


def test_delete_is_idempotent_and_supersedes_provisioning(
    api_client: APIClient,
    staff_client: APIClient,
    made: Instance,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
) -> None:
    path = f"/api/v1/instances/{made.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        first = api_client.delete(path)
        second = staff_client.delete(path)
    assert first.status_code == second.status_code == 202
    assert first.json()["status"] == second.json()["status"] == "terminating"
    assert first.json()["job"]["id"] == second.json()["job"]["id"]
    delete_job = Job.objects.get(kind="delete")
    assert sent_tasks.names_and_args == [("instances.action", [str(delete_job.pk)])]
    provision = Job.objects.get(kind="provision")
    assert provision.status == JobStatus.CANCELLED
    assert InstanceEvent.objects.filter(reason="delete_requested").count() == 1
    set_status(made, InstanceStatus.TERMINATED)
    assert api_client.delete(path).status_code == 202
    assert Job.objects.filter(kind="delete").count() == 1


def test_staff_act_on_any_tenant(
    staff_client: APIClient, made: Instance, django_capture_on_commit_callbacks: Any
) -> None:
    set_status(made, InstanceStatus.READY, novita_instance_id="abc")
    response = staff_client.post(f"/api/v1/instances/{made.pk}/stop/")
    assert response.status_code == 202
    assert InstanceEvent.objects.filter(reason="stop_requested").get().actor == "staff:operator"
