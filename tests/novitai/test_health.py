"""/health/live, /health/ready, /metrics, docs and admin are where the README says."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from novitai.celery import WORKER_HEARTBEAT_KEY, app, write_worker_heartbeat

pytestmark = pytest.mark.django_db


def test_live_answers_200(client) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_every_dependency(client) -> None:
    write_worker_heartbeat("worker@test")
    response = client.get("/health/ready")
    body = response.json()
    assert set(body["checks"]) == {
        "database",
        "cache",
        "broker",
        "worker",
        "novita",
        "jobs_queue",
        "webhooks_queue",
        "monitor",
    }
    for name in ("database", "cache", "broker", "worker"):
        check = body["checks"][name]
        assert check["status"] == "ok", (name, check)
        assert check["latency_ms"] >= 0
    assert body["checks"]["worker"]["hostname"] == "worker@test"
    assert [n for n, c in body["checks"].items() if c["required"]] == [
        "database",
        "cache",
        "broker",
    ]
    assert response.status_code == 200


def test_ready_without_a_worker_is_degraded_not_down(client) -> None:
    cache.delete(WORKER_HEARTBEAT_KEY)
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["worker"]["status"] == "down"
    assert body["checks"]["worker"]["error"] == "no worker heartbeat seen"


def test_ready_with_a_stale_worker_heartbeat(client, settings) -> None:
    cache.set(WORKER_HEARTBEAT_KEY, {"hostname": "w", "at": time.time() - 120})
    settings.HEALTH_WORKER_MAX_AGE_SECONDS = 60
    check = client.get("/health/ready").json()["checks"]["worker"]
    assert check["status"] == "down"
    assert check["error"].startswith("last worker heartbeat 12")


def test_ready_counts_no_worker_heartbeat_from_before_this_start(client, settings) -> None:
    """A restart finds the previous run's last heartbeat in the cache (a file, or Redis with
    its append-only file): fresh, but its worker may be gone."""
    settings.NOVITAI_STARTED_AT = time.time()
    cache.set(WORKER_HEARTBEAT_KEY, {"hostname": "w", "at": settings.NOVITAI_STARTED_AT - 5})
    body = client.get("/health/ready").json()
    check = body["checks"]["worker"]
    assert check["status"] == "down"
    assert check["error"] == "no worker heartbeat since this start (the last one, 5s ago, is older)"
    assert body["status"] == "degraded"

    write_worker_heartbeat("worker@test")  # the worker of this run
    check = client.get("/health/ready").json()["checks"]["worker"]
    assert (check["status"], check["hostname"]) == ("ok", "worker@test")


def test_ready_is_503_when_a_required_dependency_is_down(client, monkeypatch) -> None:
    write_worker_heartbeat("worker@test")
    monkeypatch.setitem(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"


def test_a_required_check_can_be_made_optional(client, monkeypatch, settings) -> None:
    settings.HEALTH_REQUIRED_CHECKS = ["database", "cache"]
    monkeypatch.setitem(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


def test_metrics_are_exposed(client) -> None:
    client.get("/health/live")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "django_http_requests_total_by_method_total" in text
    assert "django_db_execute_total" in text or "django_db_new_connections_total" in text


def test_openapi_schema_and_docs_are_public(client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["info"]["title"] == "novitai API"
    assert document["components"]["securitySchemes"]["BearerKey"]["scheme"] == "bearer"
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_docs_pages_load_nothing_from_another_host(client, page: str) -> None:
    """Swagger UI and ReDoc come from our static files (drf-spectacular-sidecar): without the
    internet they render (the browser suite checks the rendering and counts requests)."""
    import re

    from django.contrib.staticfiles import finders

    html = client.get(page).content.decode()
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    urls += re.findall(r"""["'](https?://[^"']+)["']""", html)
    assert urls, html
    assert [u for u in urls if u.startswith(("http:", "https:", "//"))] == []
    static = [u for u in urls if u.startswith("/static/")]
    assert len(static) >= (3 if page == "/api/docs/" else 0)
    assert [u for u in static if finders.find(u.removeprefix("/static/")) is None] == []
    ours = [u for u in urls if not u.startswith("/static/")]
    assert ours == (
        ["/api/docs/?script="]
        if page == "/api/docs/"
        else ["/api/redoc/dist/bundles/redoc.standalone.js"]
    )
    script = client.get(ours[0])
    assert script.status_code == 200
    assert len(script.content) > (1_000 if page == "/api/docs/" else 1_000_000)
    assert b"cdn.redoc.ly" not in script.content  # ReDoc's attribution logo, replaced
    csp = client.get(page)["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "img-src 'self' data: blob:" in csp


def test_admin_carries_the_site_header(client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert "novitai console" in response.content.decode()


def test_root_redirects_to_the_docs(client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/api/docs/"


# --- queues that have stopped being served ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ready_reports_a_queue_whose_oldest_due_item_waited_too_long(client, settings) -> None:
    """Rows committed: the checks run in threads of their own, on connections of their own."""
    from datetime import timedelta

    from django.utils import timezone

    from instances.selectors import MONITOR_LAST_PASS_KEY as LAST_PASS_KEY
    from jobs.models import Job
    from tenants.services import tenant_create
    from tests.jobs.test_services import make_job
    from webhooks.models import WebhookDelivery

    settings.HEALTH_QUEUE_MAX_AGE_SECONDS = 120
    tenant, _ = tenant_create(name="acme")
    now = timezone.now()
    job = make_job()
    delivery = WebhookDelivery.objects.create(
        tenant=tenant,
        event_id="msg_1",
        event_type="instance.ready",
        target_url="https://hooks.example.com/novitai",
        payload={},
        next_attempt_at=now,
    )
    cache.set(LAST_PASS_KEY, time.time() - 5, timeout=None)

    Job.objects.filter(pk=job.pk).update(next_attempt_at=now - timedelta(seconds=100))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=now - timedelta(seconds=100)
    )
    checks = client.get("/health/ready").json()["checks"]
    assert {name: checks[name]["status"] for name in QUEUES} == dict.fromkeys(QUEUES, "ok")
    assert 100 <= checks["jobs_queue"]["oldest_due_seconds"] < 110
    assert 100 <= checks["webhooks_queue"]["oldest_due_seconds"] < 110

    Job.objects.filter(pk=job.pk).update(next_attempt_at=now - timedelta(seconds=300))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=now - timedelta(seconds=300)
    )
    cache.set(LAST_PASS_KEY, time.time() - 450, timeout=None)  # 7.5 minutes
    response = client.get("/health/ready")
    checks = response.json()["checks"]
    assert {name: checks[name]["status"] for name in QUEUES} == dict.fromkeys(QUEUES, "down")
    assert checks["jobs_queue"]["error"].startswith("a job due 30")
    assert checks["jobs_queue"]["error"].endswith("s ago and not taken: the queue is not served")
    assert checks["webhooks_queue"]["error"].startswith("a webhook delivery due 30")
    assert checks["monitor"]["error"].startswith("last monitoring pass 45")
    assert checks["monitor"]["error"].endswith("s ago: the monitor queue is not served")
    # Reported, not required by default: a web process is not taken out for a stuck worker.
    assert response.json()["status"] in ("degraded", "down")
    assert not any(checks[name]["required"] for name in QUEUES)


def test_ready_reports_monitoring_never_seen(client) -> None:
    check = client.get("/health/ready").json()["checks"]["monitor"]
    assert (check["status"], check["error"]) == ("down", "no monitoring pass seen")


QUEUES = ("jobs_queue", "webhooks_queue", "monitor")
