"""The console's dashboard: its numbers are the API's, and each links to a list of exactly them."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from instances.models import FailureReason, Instance, InstanceEvent, InstanceStatus
from jobs.models import Job, JobStatus
from overview.dashboard import Count, dashboard, queue_depths, queue_of
from tenants.models import Tenant
from tests.overview.test_summary import instance
from webhooks.models import DeliveryStatus, WebhookDelivery

pytestmark = pytest.mark.django_db
S = InstanceStatus


@pytest.fixture
def admin_client(django_user_model: Any) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root"))
    return client


def failed(tenant: Tenant, reason: str, hours_ago: float) -> Instance:
    row = instance(tenant, S.FAILED, failure_reason=reason)
    InstanceEvent.objects.create(
        instance=row, from_status=S.STARTING, to_status=S.FAILED, reason=reason,
        actor="system", at=timezone.now() - timedelta(hours=hours_ago),
    )  # fmt: skip
    return row


@pytest.fixture
def rows(tenant: Tenant) -> Tenant:
    other = Tenant.objects.create(name="other")
    now = timezone.now()
    instance(tenant, S.READY, gpu_num=2, price_per_hour=Decimal("0.68"))
    instance(other, S.READY, gpu_num=8, price_per_hour=Decimal("2.72"))
    instance(tenant, S.HEALTH_CHECKING, gpu_num=1, price_per_hour=Decimal("0.34"))
    instance(tenant, S.STARTING, phase_deadline_at=now - timedelta(seconds=90))  # stuck
    instance(tenant, S.PROVISIONING, phase_deadline_at=now + timedelta(seconds=90))
    instance(tenant, S.STOPPED, gpu_num=4, price_per_hour=Decimal("1.36"))
    instance(tenant, S.TERMINATED, gpu_num=8, price_per_hour=Decimal("9.99"))
    failed(tenant, FailureReason.NO_CAPACITY, hours_ago=1)
    failed(tenant, FailureReason.NO_CAPACITY, hours_ago=2)
    failed(other, FailureReason.HEALTH_CHECK_TIMEOUT, hours_ago=3)
    failed(tenant, FailureReason.STARTUP_TIMEOUT, hours_ago=30)  # before the window
    Job.objects.create(
        kind="provision", task_name="instances.provision", tenant=tenant,
        subject_type="instance", subject_id=uuid.uuid4(), status=JobStatus.PENDING,
        next_attempt_at=now - timedelta(minutes=5),
    )  # fmt: skip
    Job.objects.create(
        kind="stop", task_name="instances.action", tenant=tenant, subject_type="instance",
        subject_id=uuid.uuid4(), status=JobStatus.FAILED,
    )  # fmt: skip
    for status, attempts, code in [
        (DeliveryStatus.FAILED, 7, 500),
        (DeliveryStatus.PENDING, 2, 502),
        (DeliveryStatus.DELIVERED, 1, 200),
    ]:
        WebhookDelivery.objects.create(
            tenant=other, event_type="instance.ready", target_url="https://hooks.example/in",
            event_id=f"msg_{uuid.uuid4().hex}",
            payload={}, status=status, attempts=attempts, round_attempts=attempts,
            last_status_code=code, next_attempt_at=now - timedelta(seconds=30),
            last_error=f"The receiver answered {code}.",
        )  # fmt: skip
    return tenant


def test_the_numbers_are_the_apis(rows: Tenant, staff_client: APIClient) -> None:
    api = staff_client.get("/api/v1/metrics/").json()
    d = dashboard()
    assert {c.key: c.n for c in d["instances"]} == api["instances"]["by_status"]
    assert d["live"] == api["instances"]["live"] == 10
    assert d["holding_a_gpu"].n == api["instances"]["holding_a_gpu"] == 4
    assert d["gpus_held"] == api["instances"]["gpus_held"] == 12
    assert d["usd_per_hour"] == api["spend"]["usd_per_hour"] == "3.74"
    assert {c.key: c.n for c in d["jobs"]} == api["jobs"]["by_status"]
    assert {c.key: c.n for c in d["deliveries"]} == api["webhook_deliveries"]["by_status"]


def test_failures_stuck_queues_and_failing_endpoints(rows: Tenant) -> None:
    d = dashboard()
    assert [(c.key, c.n) for c in d["failures"]] == [
        ("no_capacity", 2),
        ("health_check_timeout", 1),
    ]
    assert d["failures_total"] == 3
    assert d["past_deadline"].n == 1
    assert [(s["status"], s["overdue_seconds"] >= 90) for s in d["stuck"]] == [("starting", True)]
    queues = {q["name"]: q for q in d["queues"]}
    assert queues["provision"]["oldest_due_what"] == "job"
    assert 300 <= queues["provision"]["oldest_due_seconds"] < 400
    assert queues["provision"]["stale"] is True  # past HEALTH_QUEUE_MAX_AGE_SECONDS (120)
    assert queues["webhooks"]["oldest_due_what"] == "webhook delivery"
    assert queues["default"]["oldest_due_what"] == ""
    assert d["failing_endpoints"] == [
        {
            "target_url": "https://hooks.example/in",
            "failed": 1,
            "retrying": 1,
            "last_status_code": 502,
            "last_error": "The receiver answered 502.",
            "tenant": "other",
            "url": "/admin/webhooks/webhookdelivery/?q=https%3A%2F%2Fhooks.example%2Fin",
        }
    ]
    assert d["novita"]["ok"] is False  # no Novita here: said, not raised


def listed(admin_client: Client, url: str) -> int:
    """How many rows the admin's list at `url` shows ("N instances" under the table)."""
    response = admin_client.get(url)
    assert response.status_code == 200, url
    html = response.content.decode()
    assert "?e=1" not in response.get("Location", ""), url  # a filter the admin refused
    found = re.search(r'<p class="paginator">\s*(\d+) ', html)
    assert found, html[-2000:]
    return int(found.group(1))


def test_every_number_links_to_a_list_of_exactly_what_it_counts(
    rows: Tenant, admin_client: Client
) -> None:
    d = dashboard()
    counts: list[Count] = [
        *d["instances"], d["holding_a_gpu"], *d["failures"], d["past_deadline"], *d["jobs"],
        *d["deliveries"],
    ]  # fmt: skip
    assert {c.key: listed(admin_client, c.url) for c in counts} == {c.key: c.n for c in counts}
    assert listed(admin_client, d["live_url"]) == d["live"]
    assert listed(admin_client, d["failures_url"]) == d["failures_total"]
    assert listed(admin_client, d["failing_endpoints"][0]["url"]) == 3  # every delivery there


def test_the_index_shows_it_and_refreshes_it(rows: Tenant, admin_client: Client) -> None:
    index = admin_client.get("/admin/").content.decode()
    assert 'id="console-dashboard" data-url="/admin/overview/dashboard/"' in index
    ready = (
        '<a href="/admin/instances/instance/?status__exact=ready" data-metric="instances.ready">'
    )
    assert f"{ready}2</a>" in index
    assert '<script src="/static/overview/dashboard.js" defer></script>' in index
    fragment = admin_client.get("/admin/overview/dashboard/")
    assert fragment.status_code == 200
    assert 'data-metric="usd_per_hour">$3.74</span>' in fragment.content.decode()
    assert "no-cache" in fragment["Cache-Control"]


def test_the_fragment_is_for_staff_only(rows: Tenant, client: Client) -> None:
    response = client.get("/admin/overview/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_tasks_map_to_their_queues() -> None:
    assert queue_of("instances.provision") == "provision"
    assert queue_of("instances.monitor") == "monitor"
    assert queue_of("webhooks.deliver") == "webhooks"
    assert queue_of("something.else") == "default"


def test_queue_depths_are_the_brokers() -> None:
    from kombu import Exchange, Queue

    from novitai.celery import app

    name = f"console-test-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)
    with app.connection_for_write() as conn:
        producer = conn.Producer()
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
        try:
            assert queue_depths((name, "console-test-nothing")) == {
                name: 3,
                "console-test-nothing": 0,
            }
        finally:
            queue(conn.default_channel).purge()
            queue(conn.default_channel).delete()


def test_a_broker_that_does_not_answer_is_unknown_not_an_error(monkeypatch) -> None:
    from novitai.celery import app

    monkeypatch.setitem(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    assert queue_depths(("provision",)) == {"provision": None}
