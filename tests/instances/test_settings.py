"""PATCH /api/v1/instances/{id}/: on_preempt, idle_timeout_seconds and webhook_url of a live
instance."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from instances.models import Instance, InstanceEvent, InstanceStatus
from tests.jobs.conftest import SentTasks

pytestmark = pytest.mark.django_db
S = InstanceStatus


def patch(client: APIClient, instance: Instance, body: Any) -> Any:
    return client.patch(f"/api/v1/instances/{instance.pk}/", body, format="json")


def test_changes_the_settings_and_records_an_event(
    api_client: APIClient, make: Any, sent_tasks: SentTasks
) -> None:
    instance = make(billing_mode="spot")
    calls = len(sent_tasks.calls)
    response = patch(
        api_client,
        instance,
        {
            "on_preempt": "reprovision",
            "idle_timeout_seconds": 600,
            "webhook_url": "https://hooks.example.com/new",
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["on_preempt"], body["idle_timeout_seconds"], body["webhook_url"]) == (
        "reprovision",
        600,
        "https://hooks.example.com/new",
    )
    stored = Instance.objects.get(pk=instance.pk)
    assert stored.idle_timeout == timedelta(seconds=600)
    assert stored.status == S.PENDING  # no status change, no job
    assert len(sent_tasks.calls) == calls
    event = InstanceEvent.objects.filter(instance=instance).latest("at", "id")
    assert (event.reason, event.from_status, event.to_status) == (
        "settings_changed",
        "pending",
        "pending",
    )
    assert event.data == {"changed": ["idle_timeout", "on_preempt", "webhook_url"]}
    assert event.actor.startswith("tenant:")


def test_null_clears_and_the_idle_stop_time_follows(api_client: APIClient, make: Any) -> None:
    instance = make(idle_timeout_seconds=60, webhook_url="https://hooks.example.com/x")
    ready_at = timezone.now()
    Instance.objects.filter(pk=instance.pk).update(status=S.READY, ready_at=ready_at)
    longer = patch(api_client, instance, {"idle_timeout_seconds": 3600}).json()
    expected = (ready_at + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert longer["idle_stop_at"] == expected
    cleared = patch(api_client, instance, {"idle_timeout_seconds": None, "webhook_url": None})
    assert cleared.status_code == 200
    assert cleared.json()["idle_timeout_seconds"] is None
    assert cleared.json()["idle_stop_at"] is None
    assert cleared.json()["webhook_url"] is None


def test_the_same_values_write_no_event(api_client: APIClient, make: Any) -> None:
    instance = make()
    events = InstanceEvent.objects.filter(instance=instance).count()
    assert patch(api_client, instance, {"on_preempt": "notify"}).status_code == 200
    assert InstanceEvent.objects.filter(instance=instance).count() == events


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "non_field_errors"),
        ({"idle_timeout_seconds": 59}, "idle_timeout_seconds"),
        ({"idle_timeout_seconds": "600"}, "idle_timeout_seconds"),
        ({"on_preempt": "migrate"}, "on_preempt"),
        ({"webhook_url": "ftp://example.com/"}, "webhook_url"),
        ({"webhook_url": "http://127.0.0.1/hook"}, "webhook_url"),
        ({"name": "renamed"}, "name"),
        ({"billing_mode": "spot"}, "billing_mode"),
    ],
)
def test_bad_input_is_a_400_and_changes_nothing(
    api_client: APIClient, make: Any, settings: Any, body: dict[str, Any], field: str
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    instance = make(billing_mode="spot")
    before = Instance.objects.values().get(pk=instance.pk)
    response = patch(api_client, instance, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert Instance.objects.values().get(pk=instance.pk) == before


def test_on_preempt_needs_a_spot_instance(api_client: APIClient, make: Any) -> None:
    instance = make()  # on demand
    response = patch(api_client, instance, {"on_preempt": "restart"})
    assert response.status_code == 400
    assert "on_preempt" in response.json()["error"]["details"]
    assert Instance.objects.get(pk=instance.pk).on_preempt == "notify"


def test_a_terminated_instance_is_a_409(api_client: APIClient, make: Any) -> None:
    instance = make()
    Instance.objects.filter(pk=instance.pk).update(status=S.TERMINATED)
    response = patch(api_client, instance, {"idle_timeout_seconds": 600})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_instance_state"


def test_another_tenants_instance_is_a_404(make: Any, other_tenant_client: APIClient) -> None:
    instance = make()
    response = patch(other_tenant_client, instance, {"idle_timeout_seconds": 600})
    assert response.status_code == 404
    assert Instance.objects.get(pk=instance.pk).idle_timeout is None


def test_on_idle_can_change(api_client: APIClient, make: Any) -> None:
    instance = make(idle_timeout_seconds=60)
    response = patch(api_client, instance, {"on_idle": "delete"})
    assert response.status_code == 200
    assert response.json()["on_idle"] == "delete"
    assert Instance.objects.get(pk=instance.pk).on_idle == "delete"
    assert patch(api_client, instance, {"on_idle": "archive"}).status_code == 400
