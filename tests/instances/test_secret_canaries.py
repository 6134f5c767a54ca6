"""Secret canaries: an instance driven from create through ready, stop and delete, with a canary
in an env value, in the tenant's webhook secret and in the API key — then none of them is found
in plaintext anywhere novitai keeps or shows things: every column of every table, every key and
value of the caches and of the broker, the logs (every logger, DEBUG), every API response, every
admin page, every webhook delivery and what the receiver got, /metrics."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from instances.actions import instance_action_run
from instances.models import Instance, InstanceStatus
from novita_sandbox.control import SandboxControl
from novitai.celery import app
from tenants.models import Tenant
from tests.instances.helpers import monitor_until, provision
from tests.stores import broker_contents, cache_contents
from tests.webhooks.support import Receiver
from webhooks.models import DeliveryAttempt, WebhookDelivery
from webhooks.services import webhook_deliver

ENV_CANARY = f"CANARY-env-{secrets.token_hex(8)}"
# A Standard Webhooks secret is base64 of random bytes: these spell a canary too.
_RAW_SECRET = b"CANARY-webhook-" + secrets.token_hex(8).encode() + b"x"
SECRET_CANARY = "whsec_" + base64.b64encode(_RAW_SECRET).decode()


def canaries(api_key: str) -> dict[str, bytes]:
    return {
        "env value": ENV_CANARY.encode(),
        "webhook secret": SECRET_CANARY.encode(),
        "webhook secret (base64)": SECRET_CANARY.removeprefix("whsec_").encode(),
        "webhook secret (raw)": _RAW_SECRET,
        "API key": api_key.encode(),
        "API key secret": api_key.split(".")[1].encode(),
    }


class Findings:
    """Where each canary was seen (nothing, if all is well)."""

    def __init__(self, api_key: str) -> None:
        self.canaries = canaries(api_key)
        self.found: list[str] = []
        self.places = 0

    def look(self, where: str, content: Any) -> None:
        self.places += 1
        data = content if isinstance(content, bytes) else str(content).encode()
        for name, canary in self.canaries.items():
            if canary in data:
                self.found.append(f"{name} in {where}")


def database_dump(findings: Findings) -> None:
    """Every column of every row of every table, as the database returns it."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {quote(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for value in row:
                    raw = bytes(value) if isinstance(value, memoryview | bytes) else value
                    findings.look(f"table {table}", raw)


def admin_pages(client: Any, findings: Findings) -> int:
    """The changelist and every object's change page of every model in the admin."""
    pages = 0
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        listing = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert listing.status_code == 200, (meta.label, listing.status_code)
        findings.look(f"admin {meta.label} list", listing.content)
        pages += 1
        for obj in model_admin.get_queryset(listing.wsgi_request)[:50]:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            page = client.get(url)
            assert page.status_code == 200, (meta.label, obj.pk, page.status_code)
            findings.look(f"admin {meta.label} {obj.pk}", page.content)
            pages += 1
    return pages


def purge_broker() -> None:
    with app.connection_for_write() as conn:
        for queue in ("default", "provision", "monitor", "webhooks"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: S112 - a queue never declared has nothing to purge
                continue


@pytest.mark.django_db
def test_no_secret_canary_is_found_in_plaintext_anywhere(  # noqa: C901, PLR0912, PLR0915 - one look per store
    catalog: SandboxControl,
    tenant: Tenant,
    api_key: str,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
    django_user_model: Any,
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # the receiver is on loopback
    Tenant.objects.filter(pk=tenant.pk).update(webhook_secret=SECRET_CANARY)
    # Every logger at DEBUG, the database's SQL (with its parameters) logged too.
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    connection.force_debug_cursor = True
    receiver = Receiver()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    responses: list[tuple[str, bytes]] = []

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = getattr(client, method)(path, format="json", **kwargs)
        assert response.status_code < 400, (path, response.content)
        responses.append((f"{method.upper()} {path}", response.content))
        return response

    def deliver() -> None:
        for delivery in WebhookDelivery.objects.filter(status="pending"):
            webhook_deliver(delivery_id=delivery.pk)

    def act(verb: str, path: str, *target: str) -> Instance:
        response = call("delete", path) if verb == "delete" else call("post", f"{path}{verb}/")
        instance_action_run(job_id=response.json()["job"]["id"])
        reached = monitor_until(instance, *target)
        deliver()
        return reached

    body: dict[str, Any] = {
        "name": "canary-1",
        "product_name": "RTX 4090 24GB",
        "template_id": "40117",
        "envs": [{"key": "HF_TOKEN", "value": ENV_CANARY}],
        "webhook_url": receiver.url(),
    }
    try:
        # Tasks are sent to the real broker (at the end of the block, as on commit).
        with django_capture_on_commit_callbacks(execute=True):
            created = call(
                "post", "/api/v1/instances/", data=body, HTTP_IDEMPOTENCY_KEY="canary-create"
            )
            instance = Instance.objects.get(pk=created.json()["id"])
            assert instance.envs == [{"key": "HF_TOKEN", "value": ENV_CANARY}]
            monitor_until(provision(instance), InstanceStatus.READY)
            deliver()
            path = f"/api/v1/instances/{instance.pk}/"
            act("stop", path, InstanceStatus.STOPPED)
            act("delete", path, InstanceStatus.TERMINATED)
        gone = Instance.objects.get(pk=instance.pk)
        assert (gone.status, gone.envs) == (InstanceStatus.TERMINATED, [])
        deliveries = list(WebhookDelivery.objects.order_by("created_at"))
        assert [d.event_type for d in deliveries] == [
            "instance.ready",
            "instance.stopped",
            "instance.terminated",
        ]
        assert {d.status for d in deliveries} == {"delivered"}
        assert len(receiver.requests) == 3

        for get in [
            path,
            "/api/v1/instances/",
            f"{path}events/",
            "/api/v1/jobs/",
            "/api/v1/webhooks/deliveries/",
            "/api/v1/metrics/",
            "/api/v1/products/",
            "/api/v1/regions/",
            "/api/v1/templates/40117/",
            "/api/v1/",
        ]:
            call("get", get)
        with django_capture_on_commit_callbacks(execute=True):  # a replay: the first answer
            call("post", "/api/v1/instances/", data=body, HTTP_IDEMPOTENCY_KEY="canary-create")

        operator = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
        staff = APIClient()
        staff.force_login(operator)
        findings = Findings(api_key)
        for where, content in responses:
            findings.look(f"response {where}", content)
        for extra in ("/metrics", "/health/ready", "/health/live"):
            findings.look(f"response GET {extra}", staff.get(extra).content)
        for get in ("/api/v1/instances/", "/api/v1/jobs/", "/api/v1/webhooks/deliveries/"):
            findings.look(f"staff response GET {get}", staff.get(get).content)
        pages = admin_pages(staff, findings)
        for delivery in deliveries:
            findings.look(f"delivery {delivery.pk} payload", delivery.payload)
        for attempt in DeliveryAttempt.objects.all():
            findings.look(f"attempt {attempt.pk}", vars(attempt))
        for request in receiver.requests:
            findings.look("receiver body", request.body)
            findings.look("receiver headers", request.headers)
        database_dump(findings)
        cache = cache_contents()
        assert len(cache) >= 5, "the caches hold what the flow cached"
        for key, values in cache.items():
            findings.look(f"cache key {key}", key)
            for value in values:
                findings.look(f"cache {key}", value)
        broker = broker_contents()
        assert broker, "the broker holds the messages sent"
        for key, values in broker.items():
            findings.look(f"broker key {key}", key)
            for value in values:
                findings.look(f"broker {key}", value)
        for record in caplog.records:
            findings.look(f"log {record.name}", record.getMessage())
            if record.exc_info:
                findings.look(f"log {record.name} traceback", logging.Formatter().format(record))
        findings.look("logs", caplog.text)

        assert findings.found == [], "\n".join(findings.found)
        assert pages >= 15
        assert findings.places > 500
        assert sum(r.name == "django.db.backends" for r in caplog.records) > 100
    finally:
        connection.force_debug_cursor = False
        receiver.close()
        purge_broker()


def test_the_finder_finds(api_key: str) -> None:
    """The search above can fail: each canary is found where it is."""
    findings = Findings(api_key)
    found: Callable[[str], None] = lambda text: findings.look("here", text)  # noqa: E731
    for text in (ENV_CANARY, SECRET_CANARY, api_key.split(".")[1]):
        found(f"before {text} after")
    assert [f.split(" in ")[0] for f in findings.found] == [
        "env value",
        "webhook secret",
        "webhook secret (base64)",
        "API key secret",
    ]
