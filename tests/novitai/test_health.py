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
    assert set(body["checks"]) == {"database", "cache", "broker", "worker", "novita"}
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


def test_admin_carries_the_site_header(client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert "novitai administration" in response.content.decode()


def test_root_redirects_to_the_docs(client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/api/docs/"
