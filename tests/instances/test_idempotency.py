"""Idempotency-Key on create: Stripe's semantics, per tenant."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from instances.idempotency import idempotency_keys_purge, request_fingerprint
from instances.models import IdempotencyKey, IdempotencyStatus, Instance
from instances.tasks import idempotency_keys_purge_task
from jobs.models import Job
from novita_sandbox.control import SandboxControl
from tenants.models import Tenant
from tests.instances.conftest import create, create_body, nothing_created
from tests.jobs.conftest import SentTasks

pytestmark = pytest.mark.django_db


def claim_in_flight(tenant: Tenant, key: str, since: datetime | None = None) -> None:
    """A first request with the default body that claimed `key` at `since` and is running."""
    IdempotencyKey.objects.create(
        tenant=tenant,
        key=key,
        fingerprint=request_fingerprint(
            method="POST", path="/api/v1/instances/", body=create_body()
        ),
        locked_at=since or timezone.now(),
    )


def test_same_key_and_body_replays_the_first_answer_byte_for_byte(
    api_client: APIClient,
    catalog: SandboxControl,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = create(api_client, key="order-42")
    assert first.status_code == 202
    # Let the instance move on: the replay is still the first answer.
    Instance.objects.update(status="provisioning")
    with django_capture_on_commit_callbacks(execute=True):
        # The same JSON with its keys in another order is the same request.
        body = dict(reversed(list(create_body().items())))
        second = create(api_client, body, key="order-42")
    assert second.status_code == 202
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert Instance.objects.count() == 1
    assert Job.objects.count() == 1
    assert len(sent_tasks.calls) == 1
    record = IdempotencyKey.objects.get()
    assert record.status == IdempotencyStatus.DONE
    assert record.instance_id == Instance.objects.get().pk


def test_same_key_other_body_is_422(
    api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    assert create(api_client, key="k1").status_code == 202
    sent_tasks.clear()
    response = create(api_client, create_body(gpu_num=2), key="k1")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Instance.objects.count() == 1
    assert sent_tasks.calls == []


def test_key_in_flight_is_409(
    api_client: APIClient, tenant: Tenant, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    claim_in_flight(tenant, "busy")
    response = create(api_client, key="busy")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_flight"
    nothing_created(sent_tasks)


def test_a_claim_whose_request_died_is_taken_over(
    api_client: APIClient, tenant: Tenant, catalog: SandboxControl, settings: Any
) -> None:
    claim_in_flight(
        tenant,
        "orphaned",
        since=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_IN_FLIGHT_SECONDS + 1),
    )
    assert create(api_client, key="orphaned").status_code == 202
    assert IdempotencyKey.objects.get().status == IdempotencyStatus.DONE


def test_errors_are_not_stored(
    api_client: APIClient, tenant: Tenant, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    bad = create(api_client, create_body(gpu_num=9), key="retry-me")
    assert bad.status_code == 400
    Tenant.objects.filter(pk=tenant.pk).update(max_instances=0)
    refused = create(api_client, key="retry-me")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert IdempotencyKey.objects.count() == 0
    nothing_created(sent_tasks)
    Tenant.objects.filter(pk=tenant.pk).update(max_instances=None)
    assert create(api_client, key="retry-me").status_code == 202


def test_keys_are_per_tenant(
    api_client: APIClient, other_tenant_client: APIClient, catalog: SandboxControl
) -> None:
    mine = create(api_client, key="shared")
    theirs = create(other_tenant_client, key="shared")
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.parametrize("key", ["", " padded", "x" * 256, "tab\there", "naïve"])
def test_malformed_keys_are_400(
    api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks, key: str
) -> None:
    response = create(api_client, key=key)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    nothing_created(sent_tasks)


def test_expired_keys_are_purged_and_then_new(
    api_client: APIClient, catalog: SandboxControl, settings: Any
) -> None:
    assert create(api_client, key="old").status_code == 202
    old = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS, seconds=1)
    IdempotencyKey.objects.update(created_at=old)
    assert create(api_client, create_body(name="other"), key="old").status_code == 202
    assert Instance.objects.count() == 2  # an expired key is a new request
    IdempotencyKey.objects.update(created_at=old)
    assert idempotency_keys_purge() == 1
    assert idempotency_keys_purge_task() == 0
