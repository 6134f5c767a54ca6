"""Idle stop: idle_timeout_seconds on create, the heartbeat endpoint, and the idle sweep."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from instances import idle
from instances.idle import instance_idle_stop, instances_idle_due, instances_idle_stop
from instances.metrics import IDLE_STOPS
from instances.models import Instance, InstanceEvent, InstanceStatus
from instances.selectors import idle_stop_at, instance_representation
from instances.tasks import idle_stop
from jobs.models import Job, JobStatus
from novita_sandbox.control import SandboxControl
from novitai.celery import app
from novitai.errors import Conflict
from tests.instances.conftest import create, create_body
from tests.instances.helpers import monitor_until, provision, reload, timeless
from tests.jobs.conftest import SentTasks
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

WEBHOOK = "https://hooks.example.com/novitai"
THIRTY_DAYS = 30 * 24 * 3600


@pytest.fixture
def make(api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks) -> Any:
    """Creates an instance through the API (no task sent) and returns its row."""

    def make(**overrides: Any) -> Instance:
        body = create_body(name=f"i-{uuid.uuid4().hex[:8]}", **overrides)
        response = create(api_client, body)
        assert response.status_code == 202, response.content
        sent_tasks.clear()
        return Instance.objects.get(pk=response.json()["id"])

    return make


def ready(instance: Instance, *, idle_for: float, last_active_ago: float | None = None) -> None:
    """Ready since `idle_for` seconds (the provision job done), last active `last_active_ago`
    seconds ago (None: never)."""
    now = timezone.now()
    Instance.objects.filter(pk=instance.pk).update(
        status=InstanceStatus.READY,
        novita_instance_id=f"up-{instance.pk.hex[:8]}",
        ready_at=now - timedelta(seconds=idle_for),
        last_active_at=(
            now - timedelta(seconds=last_active_ago) if last_active_ago is not None else None
        ),
    )
    assert instance.current_job_id is not None
    Job.objects.filter(pk=instance.current_job_id).update(status=JobStatus.SUCCEEDED)


def idle_stops() -> float:
    return IDLE_STOPS._value.get()


def heartbeat(client: APIClient, instance: Instance | str) -> Any:
    pk = instance.pk if isinstance(instance, Instance) else instance
    return client.post(f"/api/v1/instances/{pk}/heartbeat/")


# --- the create request -----------------------------------------------------------------------


def test_create_takes_idle_timeout_seconds_within_bounds(
    api_client: APIClient, catalog: SandboxControl, sent_tasks: SentTasks
) -> None:
    for bad in (59, "60", THIRTY_DAYS + 1, 60.5, 0, -60):
        response = create(api_client, create_body(idle_timeout_seconds=bad))
        assert response.status_code == 400, bad
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert list(error["details"]) == ["idle_timeout_seconds"], bad
    assert Instance.objects.count() == 0
    assert sent_tasks.calls == []

    for name, seconds in (("low", 60), ("high", THIRTY_DAYS)):
        response = create(api_client, create_body(name=name, idle_timeout_seconds=seconds))
        assert response.status_code == 202, response.content
        body = response.json()
        assert body["idle_timeout_seconds"] == seconds
        assert (body["last_active_at"], body["idle_stop_at"]) == (None, None)  # not ready yet
        assert Instance.objects.get(name=name).idle_timeout == timedelta(seconds=seconds)
    plain = create(api_client, create_body(name="plain")).json()
    assert plain["idle_timeout_seconds"] is None
    assert Instance.objects.get(name="plain").idle_timeout is None


def test_the_representation_shows_when_a_ready_instance_stops(
    api_client: APIClient, make: Any
) -> None:
    instance = make(idle_timeout_seconds=600)
    ready(instance, idle_for=100)
    fresh = reload(instance)
    assert fresh.ready_at is not None
    body = api_client.get(f"/api/v1/instances/{instance.pk}/").json()
    assert body["status"] == "ready"
    assert body["idle_timeout_seconds"] == 600
    assert body["last_active_at"] is None
    assert body["idle_stop_at"] == instance_representation(fresh)["idle_stop_at"]
    assert idle_stop_at(fresh) == fresh.ready_at + timedelta(seconds=600)


# --- heartbeat --------------------------------------------------------------------------------


def test_heartbeat_records_activity_and_puts_off_the_stop(
    api_client: APIClient, make: Any, sent_tasks: SentTasks
) -> None:
    instance = make(idle_timeout_seconds=600)
    ready(instance, idle_for=500)
    events_before = InstanceEvent.objects.count()
    before = timezone.now()
    response = heartbeat(api_client, instance)
    after = timezone.now()
    assert response.status_code == 200, response.content
    fresh = reload(instance)
    assert fresh.last_active_at is not None
    assert before <= fresh.last_active_at <= after
    assert fresh.status == InstanceStatus.READY
    body = response.json()
    assert timeless(body) == timeless(instance_representation(fresh))
    assert body["idle_stop_at"] == (
        (fresh.last_active_at + timedelta(seconds=600)).isoformat().replace("+00:00", "Z")
    )
    # No event, no job, no task per heartbeat.
    assert InstanceEvent.objects.count() == events_before
    assert Job.objects.filter(subject_id=instance.pk).count() == 1
    assert sent_tasks.calls == []


def test_heartbeat_is_one_update_and_one_read(
    api_client: APIClient, make: Any, django_assert_num_queries: Any
) -> None:
    instance = make(idle_timeout_seconds=600)
    ready(instance, idle_for=10)
    # The key's lookup, the conditional UPDATE, the read for the answer: no lock, no event.
    with django_assert_num_queries(3):
        assert heartbeat(api_client, instance).status_code == 200


def test_heartbeat_in_every_status_on_the_way_to_ready(api_client: APIClient, make: Any) -> None:
    instance = make()
    for status in (
        InstanceStatus.PENDING,
        InstanceStatus.PROVISIONING,
        InstanceStatus.STARTING,
        InstanceStatus.HEALTH_CHECKING,
        InstanceStatus.READY,
        InstanceStatus.RESTARTING,
    ):
        Instance.objects.filter(pk=instance.pk).update(status=status, last_active_at=None)
        response = heartbeat(api_client, instance)
        assert response.status_code == 200, status
        assert response.json()["idle_stop_at"] is None  # no idle timeout
        assert reload(instance).last_active_at is not None, status


@pytest.mark.parametrize(
    "status",
    [
        InstanceStatus.STOPPING,
        InstanceStatus.STOPPED,
        InstanceStatus.FAILED,
        InstanceStatus.PREEMPTED,
        InstanceStatus.TERMINATING,
        InstanceStatus.TERMINATED,
    ],
)
def test_heartbeat_where_activity_means_nothing_is_409(
    api_client: APIClient, make: Any, sent_tasks: SentTasks, status: str
) -> None:
    instance = make(idle_timeout_seconds=60)
    Instance.objects.filter(pk=instance.pk).update(status=status)
    response = heartbeat(api_client, instance)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_instance_state"
    assert error["message"] == f"Cannot heartbeat an instance that is {status}."
    assert error["details"] == {
        "status": status,
        "allowed_from": [
            "pending",
            "provisioning",
            "starting",
            "health_checking",
            "ready",
            "restarting",
        ],
    }
    assert reload(instance).last_active_at is None
    assert sent_tasks.calls == []


def test_heartbeat_is_tenant_scoped(
    api_client: APIClient,
    other_tenant_client: APIClient,
    staff_client: APIClient,
    make: Any,
) -> None:
    instance = make(idle_timeout_seconds=60)
    for client, target in (
        (other_tenant_client, instance.pk),
        (api_client, uuid.uuid4()),
        (api_client, "not-a-uuid"),
    ):
        response = heartbeat(client, str(target))
        assert response.status_code == 404, target
        assert response.json()["error"]["code"] == "instance_not_found"
    assert reload(instance).last_active_at is None

    anonymous = heartbeat(APIClient(), instance)
    assert anonymous.status_code == 401
    assert "error" in anonymous.json()
    assert reload(instance).last_active_at is None

    assert heartbeat(staff_client, instance).status_code == 200
    assert reload(instance).last_active_at is not None


# --- the sweep --------------------------------------------------------------------------------


def test_an_idle_ready_instance_is_stopped(
    make: Any, sent_tasks: SentTasks, django_capture_on_commit_callbacks: Any
) -> None:
    instance = make(idle_timeout_seconds=60)
    ready(instance, idle_for=61)
    count = idle_stops()
    with django_capture_on_commit_callbacks(execute=True):
        assert instances_idle_stop() == 1
    fresh = reload(instance)
    assert fresh.status == InstanceStatus.STOPPING
    job = fresh.current_job
    assert job is not None
    assert (job.kind, job.status) == ("stop", JobStatus.PENDING)
    assert sent_tasks.names_and_args == [("instances.action", [str(job.pk)])]
    event = InstanceEvent.objects.filter(instance=instance).latest("at", "id")
    assert (event.from_status, event.to_status) == ("ready", "stopping")
    assert (event.reason, event.actor) == ("idle_timeout", "system")
    assert event.message == "No activity for 60 s: stopped."
    assert idle_stops() == count + 1


def test_the_due_time_is_inclusive_and_the_later_activity_counts(make: Any) -> None:
    instance = make(idle_timeout_seconds=60)
    ready(instance, idle_for=3600, last_active_ago=30)
    due = idle_stop_at(reload(instance))
    assert due is not None
    assert instances_idle_stop(now=due - timedelta(microseconds=1)) == 0
    assert reload(instance).status == InstanceStatus.READY
    assert instances_idle_stop(now=due) == 1
    assert reload(instance).status == InstanceStatus.STOPPING


def test_a_recent_heartbeat_keeps_it_ready(api_client: APIClient, make: Any) -> None:
    instance = make(idle_timeout_seconds=60)
    ready(instance, idle_for=3600)
    assert heartbeat(api_client, instance).status_code == 200
    assert instances_idle_stop() == 0
    fresh = reload(instance)
    assert fresh.status == InstanceStatus.READY
    assert not InstanceEvent.objects.filter(instance=instance, reason="idle_timeout").exists()
    # Its timeout after that heartbeat, it is stopped.
    assert instances_idle_stop(now=timezone.now() + timedelta(seconds=61)) == 1


def test_a_heartbeat_between_the_query_and_the_lock_keeps_it_ready(
    api_client: APIClient, make: Any
) -> None:
    instance = make(idle_timeout_seconds=60)
    ready(instance, idle_for=3600)
    now = timezone.now()
    assert instances_idle_due(now=now) == [instance.pk]
    assert heartbeat(api_client, instance).status_code == 200
    count = idle_stops()
    assert instance_idle_stop(instance_id=instance.pk, now=now) is False
    assert reload(instance).status == InstanceStatus.READY
    assert Job.objects.filter(subject_id=instance.pk, kind="stop").count() == 0
    assert idle_stops() == count


def test_without_an_idle_timeout_never_stopped(make: Any) -> None:
    instance = make()
    ready(instance, idle_for=365 * 86400)
    assert instances_idle_stop(now=timezone.now() + timedelta(days=3650)) == 0
    assert reload(instance).status == InstanceStatus.READY


@pytest.mark.parametrize(
    "status",
    [
        InstanceStatus.PENDING,
        InstanceStatus.STARTING,
        InstanceStatus.HEALTH_CHECKING,
        InstanceStatus.RESTARTING,
        InstanceStatus.STOPPING,
        InstanceStatus.STOPPED,
        InstanceStatus.FAILED,
    ],
)
def test_only_ready_instances_are_stopped(make: Any, sent_tasks: SentTasks, status: str) -> None:
    instance = make(idle_timeout_seconds=60)
    ready(instance, idle_for=3600)
    Instance.objects.filter(pk=instance.pk).update(status=status)
    assert instances_idle_stop() == 0
    assert reload(instance).status == status
    assert Job.objects.filter(subject_id=instance.pk).count() == 1
    assert sent_tasks.calls == []


def test_running_the_sweep_twice_stops_once(
    make: Any, sent_tasks: SentTasks, django_capture_on_commit_callbacks: Any
) -> None:
    instance = make(idle_timeout_seconds=60)
    ready(instance, idle_for=120)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert instances_idle_stop(now=now) == 1
        assert instances_idle_stop(now=now) == 0
        # A second sweep that queried before the first one stopped it finds it stopping.
        assert instance_idle_stop(instance_id=instance.pk, now=now) is False
    assert Job.objects.filter(subject_id=instance.pk, kind="stop").count() == 1
    assert InstanceEvent.objects.filter(instance=instance, reason="idle_timeout").count() == 1
    assert len(sent_tasks.calls) == 1


def test_the_query_agrees_with_idle_stop_at(make: Any) -> None:
    """The SQL rule (Greatest, Coalesce, a duration) against the Python one, row by row."""
    now = timezone.now().replace(microsecond=250_000)
    cases: list[tuple[float | None, float | None, int]] = [
        # (ready ago, last active ago, timeout): seconds
        (120, None, 60),  # due, never active
        (30, None, 60),  # not yet
        (None, 120, 60),  # no ready_at, active long ago: due
        (None, None, 60),  # neither: never due
        (3600, 30, 60),  # a recent heartbeat: not yet
        (30, 3600, 60),  # ready again since the last heartbeat: not yet
        (3600, 61, 60),  # heartbeat past its timeout: due
        (60, None, 60),  # exactly due
        (59.999999, None, 60),  # one microsecond short
        (86400 * 2, 86400 * 1.5, 86400),  # days
    ]
    expected: set[uuid.UUID] = set()
    for ready_ago, active_ago, timeout in cases:
        instance = make(idle_timeout_seconds=timeout)

        def at(ago: float | None) -> datetime | None:
            return now - timedelta(seconds=ago) if ago is not None else None

        Instance.objects.filter(pk=instance.pk).update(
            status=InstanceStatus.READY, ready_at=at(ready_ago), last_active_at=at(active_ago)
        )
        due = idle_stop_at(reload(instance))
        if due is not None and due <= now:
            expected.add(instance.pk)
    assert len(expected) == 5
    assert set(instances_idle_due(now=now)) == expected


def test_a_batch_at_most_per_run_oldest_due_first(make: Any) -> None:
    instances = [make(idle_timeout_seconds=60) for _ in range(3)]
    for n, instance in enumerate(instances):
        ready(instance, idle_for=1000 - n * 100)
    assert instances_idle_stop(limit=2) == 2
    assert [reload(i).status for i in instances] == ["stopping", "stopping", "ready"]
    assert instances_idle_stop(limit=2) == 1
    assert reload(instances[2]).status == InstanceStatus.STOPPING


def test_a_conflict_skips_that_instance_only(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = make(idle_timeout_seconds=60), make(idle_timeout_seconds=60)
    ready(first, idle_for=200)
    ready(second, idle_for=100)
    real = idle.instance_action_request

    def racing(**kwargs: Any) -> Instance:
        if kwargs["instance_id"] == first.pk:
            raise Conflict("moved", code="invalid_instance_state")
        return real(**kwargs)

    monkeypatch.setattr(idle, "instance_action_request", racing)
    assert instances_idle_stop() == 1
    assert reload(first).status == InstanceStatus.READY
    assert reload(second).status == InstanceStatus.STOPPING


def test_the_task_runs_the_sweep_on_the_monitor_queue(make: Any) -> None:
    instance = make(idle_timeout_seconds=60)
    ready(instance, idle_for=61)
    assert django_settings.CELERY_BEAT_SCHEDULE["instances.idle_stop"]["task"] == idle_stop.name
    assert app.amqp.router.route({}, idle_stop.name)["queue"].name == "monitor"
    assert idle_stop() == 1
    assert reload(instance).status == InstanceStatus.STOPPING


def test_the_admin_shows_the_idle_columns(make: Any, django_user_model: Any) -> None:
    instance = make(idle_timeout_seconds=60)
    ready(instance, idle_for=10, last_active_ago=5)
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root"))
    listing = client.get("/admin/instances/instance/")
    assert listing.status_code == 200
    assert "last active at" in listing.content.decode().lower()
    page = client.get(f"/admin/instances/instance/{instance.pk}/change/")
    assert page.status_code == 200
    assert "idle stop at" in page.content.decode().lower()


# --- against the sandbox ----------------------------------------------------------------------


def test_an_idle_instance_is_stopped_on_novita_and_notified(
    make: Any, catalog: SandboxControl
) -> None:
    from instances.actions import instance_action_run

    instance = monitor_until(
        provision(make(idle_timeout_seconds=60, webhook_url=WEBHOOK)), InstanceStatus.READY
    )
    assert instances_idle_stop() == 0
    Instance.objects.filter(pk=instance.pk).update(ready_at=timezone.now() - timedelta(seconds=61))
    assert instances_idle_stop() == 1
    job = reload(instance).current_job
    assert job is not None
    instance_action_run(job_id=str(job.pk))
    stopped = monitor_until(instance, InstanceStatus.STOPPED)
    assert stopped.stopped_at is not None
    assert stopped.current_job is not None
    assert (stopped.current_job.kind, stopped.current_job.status) == ("stop", "succeeded")
    upstream = {i["id"]: i["status"] for i in catalog.instances()}
    assert upstream[stopped.novita_instance_id] == "exited"
    delivery = WebhookDelivery.objects.get(event_type="instance.stopped")
    assert delivery.instance_id == stopped.pk
    assert delivery.payload["data"]["status"] == "stopped"
    assert delivery.payload["data"]["idle_timeout_seconds"] == 60
    assert delivery.payload["data"]["idle_stop_at"] is None
    history = [
        (e.from_status, e.to_status, e.reason)
        for e in InstanceEvent.objects.filter(instance=instance).order_by("at", "id")
        if e.from_status != e.to_status
    ][-2:]
    assert history == [("ready", "stopping", "idle_timeout"), ("stopping", "stopped", "stopped")]


def test_on_idle_delete_deletes_instead(make: Any, sent_tasks: SentTasks) -> None:
    instance = make(idle_timeout_seconds=60, on_idle="delete")
    assert instance_representation(reload(instance))["on_idle"] == "delete"
    ready(instance, idle_for=120)
    assert instances_idle_stop() == 1
    gone = reload(instance)
    assert gone.status == InstanceStatus.TERMINATING
    assert gone.current_job is not None
    assert gone.current_job.kind == "delete"
    event = InstanceEvent.objects.filter(instance=instance).latest("at", "id")
    assert (event.reason, event.actor) == ("idle_timeout", "system")
    assert event.message == "No activity for 60 s: deleted."


def test_on_idle_is_validated(api_client: APIClient, catalog: SandboxControl) -> None:
    response = create(api_client, create_body(idle_timeout_seconds=60, on_idle="shutdown"))
    assert response.status_code == 400
    assert "on_idle" in response.json()["error"]["details"]
    assert not Instance.objects.exists()
    default = create(api_client, create_body(name="with-default"))
    assert default.json()["on_idle"] == "stop"
