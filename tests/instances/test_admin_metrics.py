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
    response = admin_client.post(
        "/admin/instances/instance/",
        {"action": "stop_instances", "_selected_action": [str(instance.pk)]},
    )
    assert response.status_code == 302
    assert reload(instance).status == InstanceStatus.STOPPING
    assert reload(instance).current_job is not None
    admin_client.post(
        "/admin/instances/instance/",
        {"action": "delete_instances", "_selected_action": [str(instance.pk)]},
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
        {"action": "retry_instances", "_selected_action": [str(instance.pk)]},
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
