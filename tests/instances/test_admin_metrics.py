"""Operators: the admin (filters, events inline, stop/delete/retry), retries, and /metrics."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from instances.models import FailureReason, Instance, InstanceStatus
from jobs.models import Job, JobStatus
from novita_sandbox.control import SandboxControl
from tests.instances.conftest import create, create_body
from tests.instances.helpers import monitor_until, provision, reload

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db: None, django_user_model: Any) -> Client:
    user = django_user_model.objects.create_superuser("root")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def instance(api_client: APIClient, catalog: SandboxControl) -> Instance:
    body = create_body(envs=[{"key": "HF_TOKEN", "value": "hf_admin_canary"}])
    assert create(api_client, body).status_code == 202
    return Instance.objects.get()


def test_admin_pages(admin_client: Client, instance: Instance) -> None:
    for path in (
        "/admin/instances/instance/",
        "/admin/instances/instance/?status__exact=pending&region=&tenant__id__exact="
        f"{instance.tenant_id}",
        "/admin/jobs/job/?status__exact=pending&kind=provision",
    ):
        assert admin_client.get(path).status_code == 200, path
    page = admin_client.get(f"/admin/instances/instance/{instance.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "requested" in text  # the event inline
    assert "hf_admin_canary" not in text
    assert "HF_TOKEN" not in text


def test_admin_stop_and_delete_actions(admin_client: Client, instance: Instance) -> None:
    Instance.objects.filter(pk=instance.pk).update(
        status=InstanceStatus.READY, novita_instance_id="abc"
    )
    stop = {"action": "stop_instances", "_selected_action": [str(instance.pk)]}
    asked = admin_client.post("/admin/instances/instance/", stop)
    assert asked.status_code == 200  # asks first: nothing done yet
    assert "Stop these instances?" in asked.content.decode()
    assert reload(instance).status == InstanceStatus.READY
    response = admin_client.post("/admin/instances/instance/", {**stop, "confirm": "yes"})
    assert response.status_code == 302
    assert reload(instance).status == InstanceStatus.STOPPING
    assert reload(instance).current_job is not None
    stopping = reload(instance).events.order_by("at", "id").last()
    assert stopping is not None
    assert (stopping.reason, stopping.actor) == ("stop_requested", "staff:root")
    admin_client.post(
        "/admin/instances/instance/",
        {"action": "delete_instances", "_selected_action": [str(instance.pk)], "confirm": "yes"},
    )
    assert reload(instance).status == InstanceStatus.TERMINATING
    assert Job.objects.get(kind="stop").status == JobStatus.CANCELLED


def test_a_failed_provisioning_is_retried_and_provisions(
    admin_client: Client, staff_client: APIClient, instance: Instance, catalog: SandboxControl
) -> None:
    catalog.set_faults(capacity_errors={"*": -1})
    failed = provision(instance)
    assert failed.failure_reason == FailureReason.NO_CAPACITY
    catalog.set_faults(capacity_errors={})
    from catalog.models import Product

    Product.objects.update(capacity_failed_until=None)  # the capacity came back
    caches["catalog"].clear()
    assert failed.current_job is not None
    response = staff_client.post(f"/api/v1/jobs/{failed.current_job.pk}/retry/")
    assert response.status_code == 202, response.content
    pending = reload(failed)
    assert (pending.status, pending.failure_reason, pending.offers_tried) == ("pending", "", [])
    provisioned = provision(pending)
    assert provisioned.status == InstanceStatus.STARTING, provisioned.failure_message
    ready = monitor_until(provisioned, InstanceStatus.READY)
    assert ready.current_job is not None
    assert ready.current_job.pk == failed.current_job.pk
    assert ready.current_job.status == JobStatus.SUCCEEDED


def test_retry_waits_for_the_upstream_cleanup(admin_client: Client, instance: Instance) -> None:
    Instance.objects.filter(pk=instance.pk).update(
        status=InstanceStatus.FAILED, novita_instance_id="left-behind", released_at=None
    )
    Job.objects.update(status=JobStatus.FAILED, finished_at=timezone.now())
    response = admin_client.post(
        "/admin/instances/instance/",
        {"action": "retry_instances", "_selected_action": [str(instance.pk)], "confirm": "yes"},
        follow=True,
    )
    assert "has not yet confirmed" in response.content.decode()
    assert reload(instance).status == InstanceStatus.FAILED
    assert Job.objects.get().status == JobStatus.FAILED


def test_metrics(client: Client, instance: Instance) -> None:
    Instance.objects.filter(pk=instance.pk).update(status=InstanceStatus.READY)
    text = client.get("/metrics").content.decode()
    assert 'novitai_instances{status="ready"} 1.0' in text
    assert 'novitai_instances{status="pending"} 0.0' in text
    assert "novitai_instance_ready_seconds" in text
    assert "novitai_jobs_finished_total" in text


def test_the_instance_page_reads_as_a_timeline_with_links(
    admin_client: Client, instance: Instance
) -> None:
    Instance.objects.filter(pk=instance.pk).update(
        status=InstanceStatus.READY,
        novita_instance_id="abc",
        novita_product_id="p-1",
        product_name="RTX 4090 24GB",
        region="US-TX-02",
        endpoints=[
            {"port": 8188, "type": "http", "url": "http://127.0.0.1:1/app/", "healthy": True}
        ],
        offers_tried=[{"product_name": "RTX 4090 24GB", "region": "EU-NL-01",
                       "price_per_hour": "0.35", "outcome": "no_capacity"}],
    )  # fmt: skip
    event = instance.events.get()
    html = admin_client.get(f"/admin/instances/instance/{instance.pk}/change/").content.decode()
    at = event.at.strftime("%Y-%m-%d %H:%M:%S")
    assert f'<span class="console-when">{at} UTC</span>' in html  # to the second
    assert "<td>tenant:acme</td>" in html  # who
    assert "<td>requested</td>" in html  # why
    assert '<a href="http://127.0.0.1:1/app/">http://127.0.0.1:1/app/</a>' in html
    assert "<td>EU-NL-01</td><td>0.35</td><td>no_capacity</td>" in html
    job = reload(instance).current_job
    assert job is not None
    assert f'<a href="/admin/jobs/job/{job.pk}/change/">provision</a>' in html
    for operation in ("stop", "restart", "delete"):
        assert f'href="/admin/instances/instance/{instance.pk}/operate/{operation}/"' in html
    assert "/operate/start/" not in html  # not from ready
    assert "hf_admin_canary" not in html


def test_an_operation_asks_then_acts_as_the_staff_user(
    admin_client: Client, instance: Instance
) -> None:
    Instance.objects.filter(pk=instance.pk).update(
        status=InstanceStatus.READY, novita_instance_id="abc"
    )
    url = f"/admin/instances/instance/{instance.pk}/operate/stop/"
    asked = admin_client.get(url)
    assert asked.status_code == 200
    assert "Stop these instances? Their disks are kept" in asked.content.decode()
    assert reload(instance).status == InstanceStatus.READY
    done = admin_client.post(url, {"confirm": "yes"})
    assert done.status_code == 302
    assert done["Location"] == f"/admin/instances/instance/{instance.pk}/change/"
    stopping = reload(instance)
    assert stopping.status == InstanceStatus.STOPPING
    last = stopping.events.order_by("at", "id").last()
    assert last is not None
    assert (last.reason, last.actor) == ("stop_requested", "staff:root")

    refused = admin_client.post(
        f"/admin/instances/instance/{instance.pk}/operate/start/", {"confirm": "yes"}, follow=True
    )
    assert [str(m) for m in refused.context["messages"]] == [
        "Stopping: trainer-1.",
        "trainer-1: Cannot start an instance that is stopping.",
    ]
    assert reload(instance).status == InstanceStatus.STOPPING
    assert (
        admin_client.post(
            f"/admin/instances/instance/{instance.pk}/operate/explode/", {"confirm": "yes"}
        ).status_code
        == 404
    )
