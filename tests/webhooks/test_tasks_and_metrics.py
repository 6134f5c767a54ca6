"""Celery tasks (called directly or eagerly), concurrent claims, and metrics."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from novitai.celery import app as celery_app
from tenants.models import Tenant
from tests.webhooks.support import Answer, Receiver, make_due, record
from webhooks import tasks
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import webhook_deliver

pytestmark = pytest.mark.usefixtures("allow_private")

T = TypeVar("T")


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def eager() -> Iterator[None]:
    """Tasks sent with .delay() run in place: the sweep's wake-ups without a broker."""
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


def test_tasks_are_registered_and_routed_to_the_webhooks_queue() -> None:
    assert celery_app.tasks["webhooks.deliver"].name == tasks.deliver.name == "webhooks.deliver"
    assert celery_app.tasks["webhooks.sweep"].name == tasks.sweep.name == "webhooks.sweep"
    assert celery_app.amqp.router.route({}, "webhooks.deliver")["queue"].name == "webhooks"
    assert celery_app.amqp.router.route({}, "webhooks.sweep")["queue"].name == "webhooks"
    entry = django_settings.CELERY_BEAT_SCHEDULE["webhooks.sweep"]
    assert entry["task"] == "webhooks.sweep"
    assert entry["schedule"] == django_settings.WEBHOOK_SWEEP_INTERVAL_SECONDS


@pytest.mark.django_db
def test_deliver_task_delivers_by_id(tenant: Tenant, receiver: Receiver) -> None:
    delivery = record(tenant, receiver.url())

    tasks.deliver.apply(args=[str(delivery.pk)]).get()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_deliver_task_ignores_bad_and_unknown_ids(tenant: Tenant, receiver: Receiver) -> None:
    delivery = record(tenant, receiver.url())

    tasks.deliver.apply(args=["not-a-uuid"]).get()
    tasks.deliver.apply(args=["5d9e1c8a-0000-4c6e-9a1d-7b3c2e1f0a9b"]).get()

    assert receiver.requests == []
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("eager")
def test_sweep_task_delivers_what_is_due_and_nothing_else(
    tenant: Tenant, receiver: Receiver
) -> None:
    due = record(tenant, receiver.url())
    WebhookDelivery.objects.filter(pk=due.pk).update(dispatched_at=None)
    later = record(tenant, receiver.url())
    WebhookDelivery.objects.filter(pk=later.pk).update(
        dispatched_at=None, next_attempt_at=timezone.now() + timedelta(minutes=5)
    )

    assert tasks.sweep.apply().get() == 1

    assert WebhookDelivery.objects.get(pk=due.pk).status == DeliveryStatus.DELIVERED
    assert WebhookDelivery.objects.get(pk=later.pk).attempts == 0
    assert len(receiver.requests) == 1
    assert tasks.sweep.apply().get() == 0


def _at_once(workers: int, work: Callable[[], T]) -> list[T]:
    """Runs `work` in `workers` threads released together, each on its own connection."""
    barrier = threading.Barrier(workers)
    results: list[T] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(work())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_row_send_one_request(
    tenant: Tenant, receiver: Receiver
) -> None:
    delivery = record(tenant, receiver.url())
    workers = 4

    results = _at_once(workers, lambda: webhook_deliver(delivery_id=delivery.pk))

    assert len(results) == workers
    assert sum(result is not None for result in results) == 1
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert delivery.status == DeliveryStatus.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_dispatch_each_row_once(tenant: Tenant, receiver: Receiver) -> None:
    from webhooks.services import webhook_sweep

    deliveries = [record(tenant, receiver.url()) for _ in range(6)]
    WebhookDelivery.objects.update(dispatched_at=None)

    swept = _at_once(3, webhook_sweep)

    dispatched = [pk for batch in swept for pk in batch]
    assert sorted(map(str, dispatched)) == sorted(str(d.pk) for d in deliveries)


@pytest.mark.django_db
def test_metrics_count_outcomes_results_and_lag(tenant: Tenant, receiver: Receiver) -> None:
    before = {
        "retry": _sample("novitai_webhook_deliveries_total", outcome="retry"),
        "delivered": _sample("novitai_webhook_deliveries_total", outcome="delivered"),
        "gone": _sample("novitai_webhook_deliveries_total", outcome="gone"),
        "http_error": _sample("novitai_webhook_attempts_total", result="http_error"),
        "success": _sample("novitai_webhook_attempts_total", result="success"),
        "lag": _sample("novitai_webhook_delivery_lag_seconds_count"),
    }
    receiver.answers.extend([Answer(500), Answer(200), Answer(410)])
    delivery = record(tenant, receiver.url())
    webhook_deliver(delivery_id=delivery.pk)
    make_due(delivery)
    webhook_deliver(delivery_id=delivery.pk)
    gone = record(tenant, receiver.url())
    webhook_deliver(delivery_id=gone.pk)

    assert _sample("novitai_webhook_deliveries_total", outcome="retry") == before["retry"] + 1
    assert (
        _sample("novitai_webhook_deliveries_total", outcome="delivered") == before["delivered"] + 1
    )
    assert _sample("novitai_webhook_deliveries_total", outcome="gone") == before["gone"] + 1
    assert (
        _sample("novitai_webhook_attempts_total", result="http_error") == before["http_error"] + 1
    )
    assert _sample("novitai_webhook_attempts_total", result="success") == before["success"] + 1
    assert _sample("novitai_webhook_delivery_lag_seconds_count") == before["lag"] + 1


@pytest.mark.django_db
def test_scrape_reports_deliveries_by_status(tenant: Tenant, receiver: Receiver) -> None:
    receiver.default = Answer(500)
    record(tenant, receiver.url())
    retried = record(tenant, receiver.url())
    webhook_deliver(delivery_id=retried.pk)

    text = Client().get("/metrics").content.decode()

    def value(line_start: str) -> float:
        match = re.search(rf"^{re.escape(line_start)} (\S+)$", text, re.MULTILINE)
        assert match, line_start
        return float(match.group(1))

    assert value('novitai_webhook_deliveries_by_status{status="pending"}') == 2
    assert value('novitai_webhook_deliveries_by_status{status="delivered"}') == 0
    assert value('novitai_webhook_deliveries_by_status{status="failed"}') == 0
    assert value('novitai_webhook_deliveries_by_status{status="gone"}') == 0
    assert value("novitai_webhook_deliveries_due") == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("eager")
def test_recording_wakes_a_worker_after_commit_only(
    tenant: Tenant, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        delivery = record(tenant, receiver.url())
        assert receiver.requests == []  # nothing leaves before the commit

    assert len(callbacks) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert len(receiver.requests) == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("eager")
def test_a_rolled_back_event_is_never_sent(
    tenant: Tenant, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    from django.db import transaction

    from webhooks.services import webhook_event_record

    def state_change_that_fails() -> None:
        with transaction.atomic():
            webhook_event_record(
                tenant=tenant, url=receiver.url(), event_type="instance.ready", data={}
            )
            raise RuntimeError("the state change failed")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError, match="the state change failed"),
    ):
        state_change_that_fails()

    assert callbacks == []
    assert WebhookDelivery.objects.count() == 0
    assert receiver.requests == []


@pytest.mark.django_db
def test_a_process_without_the_task_modules_still_sends_the_wake_up(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """A web process never imports webhooks.tasks (Celery imports task modules in workers): the
    wake-up of a delivery recorded there is sent by name, to a real broker of the test's own."""
    import json

    from tests.outages import RedisServer, broker_at

    monkeypatch.delitem(celery_app.tasks, "webhooks.deliver")  # as in a web process
    server = RedisServer()
    server.start()
    try:
        with broker_at(f"{server.url}/10"), django_capture_on_commit_callbacks(execute=True):
            delivery = record(tenant, "https://hooks.example.com/novitai")
        [message] = [json.loads(raw) for raw in server.client(10).lrange("webhooks", 0, -1)]
    finally:
        server.kill()
    assert message["headers"]["task"] == "webhooks.deliver"
    assert message["headers"]["argsrepr"] == repr([str(delivery.pk)])
    assert WebhookDelivery.objects.get(pk=delivery.pk).dispatched_at is not None
