"""Redis down (caches, throttle, Novita's shared state and the broker): the API keeps answering,
creates are accepted (the job row is the outbox), and the sweeper sends what the broker could not
take once Redis is back. Against a redis-server of the test's own, really killed."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from instances.models import Instance
from jobs.models import Job, JobStatus
from jobs.services import jobs_sweep
from tests.instances.conftest import catalog, create, create_body, novita  # noqa: F401 (fixtures)
from tests.outages import RedisServer, broker_at, free_port, redis_caches

pytestmark = pytest.mark.django_db

BROKER_DB = 10


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    if server.process is not None:
        server.kill()


@pytest.fixture
def on_redis(settings: Any, redis_server: RedisServer) -> Iterator[RedisServer]:
    """Caches and broker on the test's own Redis; an outage is retried at every call, so that
    its end is seen at once."""
    settings.CACHES = redis_caches(redis_server.url)
    settings.OUTAGE_RETRY_SECONDS = 0
    with broker_at(f"{redis_server.url}/{BROKER_DB}"):
        yield redis_server


def queued(server: RedisServer, queue: str) -> list[dict[str, Any]]:
    """The messages waiting in a queue of the broker (kombu's Redis list)."""
    return [json.loads(raw) for raw in server.client(BROKER_DB).lrange(queue, 0, -1)]


@pytest.mark.usefixtures("catalog")
def test_the_api_answers_while_redis_is_down_and_loses_nothing_it_accepted(
    api_client: APIClient,
    on_redis: RedisServer,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = create(api_client, create_body(name="before"))
    assert first.status_code == 202, first.content
    assert [m["headers"]["task"] for m in queued(on_redis, "provision")] == ["instances.provision"]
    on_redis.client(BROKER_DB).delete("provision")
    throttle_errors = sample("novitai_cache_errors_total", operation="throttle")
    broker_errors = sample("novitai_broker_errors_total", operation="job")

    on_redis.kill()
    caplog.set_level(logging.WARNING, logger="novitai.outages")

    listed = api_client.get("/api/v1/instances/")
    assert listed.status_code == 200, listed.content
    assert [row["name"] for row in listed.json()["results"]] == ["before"]
    retrieved = api_client.get(f"/api/v1/instances/{first.json()['id']}/")
    assert retrieved.status_code == 200, retrieved.content
    assert retrieved.json()["name"] == "before"
    assert api_client.get("/api/v1/products/").status_code == 200
    assert api_client.get("/api/v1/regions/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        second = create(api_client, create_body(name="during"))
    assert second.status_code == 202, second.content
    instance = Instance.objects.get(pk=second.json()["id"])
    job = Job.objects.get(pk=instance.current_job_id or "")
    assert (job.status, job.task_name, job.dispatched_at) == (
        JobStatus.PENDING,
        "instances.provision",
        None,  # not sent: due for the next sweep
    )
    # The throttle failed open on each of the five requests; the one wake-up was not sent.
    assert sample("novitai_cache_errors_total", operation="throttle") == throttle_errors + 5
    assert sample("novitai_broker_errors_total", operation="job") == broker_errors + 1
    # One warning per dependency for the whole outage, not one per call.
    warned = [r for r in caplog.records if r.name == "novitai.outages"]
    assert sorted((r.levelname, r.getMessage().split(" ", 2)[:2]) for r in warned) == [
        ("WARNING", ["broker", "unreachable"]),
        ("WARNING", ["cache", "unreachable"]),
    ]

    on_redis.start()  # back, empty: whatever it held is gone
    assert jobs_sweep() == 1
    [message] = queued(on_redis, "provision")
    assert message["headers"]["task"] == "instances.provision"
    assert json.loads(base64.b64decode(message["body"]))[0] == [str(job.pk)]  # its args
    assert Job.objects.get(pk=job.pk).dispatched_at is not None


def test_the_cache_api_answers_503_while_the_cache_is_down(
    staff_client: APIClient, settings: Any
) -> None:
    """Statistics and clears are about the cache itself: they cannot fail open."""
    settings.CACHES = redis_caches(f"redis://127.0.0.1:{free_port()}")
    for response in (staff_client.get("/api/v1/cache/"), staff_client.delete("/api/v1/cache/")):
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "5"
        error = response.json()["error"]
        assert (error["code"], error["message"]) == (
            "service_unavailable",
            "The cache cannot be reached right now; try again shortly.",
        )
