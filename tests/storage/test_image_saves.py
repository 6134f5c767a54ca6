"""Save an instance as an image: POST …/instances/{id}/save-image/ → 202, a tracked job that
follows Novita's (job/save/image, jobs) to success or failure with Novita's message and its
webhook, cancelled through job/break; bad input a 400, nothing sent. Against the sandbox over
HTTP, the tasks run as a worker would run them."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.models import Instance, InstanceEvent, InstanceStatus
from novita_sandbox.control import SandboxControl
from storage.images import image_save_start, image_saves_follow
from storage.models import ImageSave, ImageSaveStatus
from tests.instances.conftest import catalog, make, novita  # noqa: F401 (fixtures)
from tests.instances.helpers import monitor_until, provision, wait_for
from tests.jobs.conftest import SentTasks, sent_tasks  # noqa: F401 (a fixture)
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

WEBHOOK = "https://hooks.example.com/novitai"
IMAGE = "ghcr.io/acme/trainer:v2"


@pytest.fixture
def ready(make: Any) -> Instance:  # noqa: F811
    return monitor_until(provision(make(webhook_url=WEBHOOK)), InstanceStatus.READY)


def save(client: APIClient, instance: Instance, **body: Any) -> Any:
    return client.post(
        f"/api/v1/instances/{instance.pk}/save-image/", {"image": IMAGE, **body}, format="json"
    )


def started(client: APIClient, instance: Instance, sent: SentTasks, capture: Any) -> ImageSave:
    with capture(execute=True):  # the start is sent after commit
        response = save(client, instance)
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["image"], body["instance_id"]) == (
        "pending",
        IMAGE,
        str(instance.pk),
    )
    assert sent.names_and_args == [("storage.image_save_start", [body["id"]])]
    image_save_start(save_id=body["id"])
    return ImageSave.objects.get(pk=body["id"])


def followed_until(save_id: Any, *statuses: str) -> ImageSave:
    def ended() -> ImageSave | None:
        image_saves_follow()
        row = ImageSave.objects.get(pk=save_id)
        return row if row.status in statuses else None

    found = wait_for(ended, what=f"the image save to be {statuses}")
    assert found is not None
    return found


def test_a_save_succeeds_and_says_so(
    api_client: APIClient,
    ready: Instance,
    catalog: SandboxControl,  # noqa: F811
    sent_tasks: SentTasks,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    running = started(api_client, ready, sent_tasks, django_capture_on_commit_callbacks)
    assert running.status == ImageSaveStatus.RUNNING
    [job] = catalog.jobs()
    assert (job["id"], job["image"], job["instanceId"]) == (
        running.novita_job_id,
        IMAGE,
        ready.novita_instance_id,
    )
    assert InstanceEvent.objects.filter(instance=ready, reason="image_save_requested").exists()
    done = followed_until(running.pk, ImageSaveStatus.SUCCEEDED)
    assert done.finished_at is not None
    delivery = WebhookDelivery.objects.get(event_type="instance.image_saved")
    assert delivery.instance_id == ready.pk
    assert delivery.payload["data"]["status"] == "succeeded"
    assert delivery.payload["data"]["image"] == IMAGE
    body = api_client.get(f"/api/v1/image-saves/{done.pk}/").json()
    assert body["status"] == "succeeded"
    assert api_client.post(f"/api/v1/image-saves/{done.pk}/cancel/").status_code == 409


def test_a_failed_save_carries_novitas_message(
    api_client: APIClient,
    ready: Instance,
    catalog: SandboxControl,  # noqa: F811
    sent_tasks: SentTasks,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    catalog.set_faults(save_image_fail_image="trainer")
    running = started(api_client, ready, sent_tasks, django_capture_on_commit_callbacks)
    failed = followed_until(running.pk, ImageSaveStatus.FAILED)
    [job] = catalog.jobs()
    assert job["state"] == "fail"
    assert failed.message
    delivery = WebhookDelivery.objects.get(event_type="instance.image_save_failed")
    assert delivery.payload["data"]["message"] == failed.message


def test_a_save_is_cancelled_through_job_break(
    api_client: APIClient,
    ready: Instance,
    catalog: SandboxControl,  # noqa: F811
    sent_tasks: SentTasks,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    catalog.set_timing(save_image=600)
    running = started(api_client, ready, sent_tasks, django_capture_on_commit_callbacks)
    answer = api_client.post(f"/api/v1/image-saves/{running.pk}/cancel/")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "cancelled"
    [job] = catalog.jobs()
    assert job["state"] == "break"
    image_saves_follow()
    assert ImageSave.objects.get().status == ImageSaveStatus.CANCELLED
    assert not WebhookDelivery.objects.filter(event_type__startswith="instance.image_").exists()


def test_one_save_at_a_time(
    api_client: APIClient,
    ready: Instance,
    catalog: SandboxControl,  # noqa: F811
    sent_tasks: SentTasks,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    catalog.set_timing(save_image=600)
    started(api_client, ready, sent_tasks, django_capture_on_commit_callbacks)
    again = save(api_client, ready)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "job_running")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image": "Not An Image!"}, "image"),
        ({"image": "ghcr.io/Acme/UPPER:v1"}, "image"),
        ({"image": "repo:tag with space"}, "image"),
        ({"image": ""}, "image"),
        ({"registry_auth_id": "no spaces please"}, "registry_auth_id"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_image_reference_is_a_400_and_nothing_is_sent(
    api_client: APIClient,
    ready: Instance,
    catalog: SandboxControl,  # noqa: F811
    sent_tasks: SentTasks,  # noqa: F811
    body: dict[str, Any],
    field: str,
) -> None:
    response = save(api_client, ready, **body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert ImageSave.objects.count() == 0
    assert catalog.jobs() == []


def test_not_ready_or_someone_elses_is_refused(
    api_client: APIClient,
    other_tenant_client: APIClient,
    make: Any,  # noqa: F811
    catalog: SandboxControl,  # noqa: F811
) -> None:
    pending = make()
    refused = save(api_client, pending)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "invalid_instance_state")
    assert save(other_tenant_client, pending).status_code == 404
    assert ImageSave.objects.count() == 0
