"""Idle by GPU utilization (instances/gpu_idle.py): idle_policy on create, Novita's GPU metrics
read sparingly in the idle pass, the rule combined with the heartbeat (both must say idle),
gpu_utilization on the representation and in Prometheus — against the sandbox over HTTP, its
clock moved forward instead of waiting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from instances.idle import instances_idle_stop
from instances.models import Instance, InstanceEvent, InstanceStatus
from instances.selectors import instance_representation
from novita_sandbox.control import SandboxControl
from tests.instances.conftest import create, create_body
from tests.instances.helpers import monitor_until, provision, reload

pytestmark = pytest.mark.django_db

POLICY = {"gpu_utilization_below": 5, "for_seconds": 60}
METRICS = "GET /openapi/v1/metrics/gpu/instance"


def metric_reads(sandbox: SandboxControl) -> int:
    return sum(sandbox.stats()["calls"].get(METRICS, {}).values())


@pytest.fixture
def gpu_ready(make: Any, catalog: SandboxControl, settings: Any) -> Any:
    """ready_with(**body): a ready instance with the policy, its GPU busy (80 %); the sandbox's
    metrics without lag and every instance read on every idle pass."""
    settings.GPU_METRICS_READ_INTERVAL_SECONDS = 0
    catalog.set_timing(metrics_lag=0)

    def ready_with(**body: Any) -> Instance:
        instance = monitor_until(provision(make(idle_policy=POLICY, **body)), InstanceStatus.READY)
        catalog.set_load(instance.novita_instance_id, gpu=80)
        return instance

    return ready_with


def test_a_gpu_below_its_threshold_for_long_enough_is_stopped(
    gpu_ready: Any, catalog: SandboxControl
) -> None:
    instance = gpu_ready()
    catalog.advance_clock(120)
    assert instances_idle_stop() == 0
    busy = reload(instance)
    assert (busy.gpu_utilization, busy.gpu_idle_since) == (80.0, None)
    body = instance_representation(busy)
    assert body["gpu_utilization"] == 80.0
    assert body["gpu_utilization_at"] is not None
    assert body["idle_policy"] == {"gpu_utilization_below": 5.0, "for_seconds": 60}

    catalog.set_load(instance.novita_instance_id, gpu=0)
    catalog.advance_clock(60)
    assert instances_idle_stop() == 0  # below it, but not for 60 s yet
    quiet = reload(instance)
    assert quiet.gpu_utilization == 0.0
    assert quiet.gpu_idle_since is not None

    catalog.advance_clock(60)
    assert instances_idle_stop() == 1
    stopped = reload(instance)
    assert stopped.status == InstanceStatus.STOPPING
    event = InstanceEvent.objects.filter(instance=instance).latest("at", "id")
    assert (event.reason, event.actor) == ("idle_timeout", "system")
    assert event.message == "GPU utilization below 5% for 60 s: stopped."


def test_with_a_heartbeat_too_both_must_say_idle(
    gpu_ready: Any, catalog: SandboxControl, api_client: APIClient
) -> None:
    instance = gpu_ready(idle_timeout_seconds=600)
    catalog.set_load(instance.novita_instance_id, gpu=0)
    catalog.advance_clock(240)
    assert instances_idle_stop() == 0  # the GPU says idle, the heartbeat does not (ready < 600 s)
    assert reload(instance).gpu_idle_since is not None
    long_ago = timezone.now() - timedelta(seconds=900)
    Instance.objects.filter(pk=instance.pk).update(ready_at=long_ago, last_active_at=long_ago)
    assert instances_idle_stop() == 1
    event = InstanceEvent.objects.filter(instance=instance).latest("at", "id")
    assert event.message == (
        "No activity for 600 s and GPU utilization below 5% for 60 s: stopped."
    )


def test_a_busy_gpu_keeps_an_instance_without_heartbeats(
    gpu_ready: Any, catalog: SandboxControl
) -> None:
    instance = gpu_ready(idle_timeout_seconds=60)
    long_ago = timezone.now() - timedelta(seconds=900)
    Instance.objects.filter(pk=instance.pk).update(ready_at=long_ago, last_active_at=long_ago)
    catalog.advance_clock(300)
    assert instances_idle_stop() == 0
    assert reload(instance).status == InstanceStatus.READY


def test_metrics_are_read_sparingly(gpu_ready: Any, catalog: SandboxControl, settings: Any) -> None:
    first, second = gpu_ready(), gpu_ready(name="trainer-2")
    settings.GPU_METRICS_READ_INTERVAL_SECONDS = 60
    before = metric_reads(catalog)
    instances_idle_stop()
    assert metric_reads(catalog) == before + 2  # one each
    instances_idle_stop()
    instances_idle_stop()
    assert metric_reads(catalog) == before + 2  # read again only after a minute
    settings.GPU_METRICS_BATCH_SIZE = 1
    Instance.objects.filter(pk__in=[first.pk, second.pk]).update(gpu_metrics_read_at=None)
    instances_idle_stop()
    assert metric_reads(catalog) == before + 3  # a batch at most a pass


def test_prometheus_shows_the_utilization(
    gpu_ready: Any, catalog: SandboxControl, client: Client
) -> None:
    instance = gpu_ready()
    catalog.advance_clock(120)
    instances_idle_stop()
    text = client.get("/metrics").content.decode()
    assert f'novitai_instance_gpu_utilization_percent{{instance="{instance.pk}"}} 80.0' in text
    at = reload(instance).gpu_utilization_at
    assert at is not None
    stamp = f'novitai_instance_gpu_utilization_timestamp{{instance="{instance.pk}"}} '
    [line] = [line for line in text.splitlines() if line.startswith(stamp)]
    assert float(line.removeprefix(stamp)) == at.timestamp()


@pytest.mark.parametrize(
    "policy",
    [
        {"gpu_utilization_below": 0, "for_seconds": 60},
        {"gpu_utilization_below": 101, "for_seconds": 60},
        {"gpu_utilization_below": "5", "for_seconds": 60},
        {"gpu_utilization_below": 5, "for_seconds": 30},
        {"gpu_utilization_below": 5, "for_seconds": 60.5},
        {"gpu_utilization_below": 5},
        {"gpu_utilization_below": 5, "for_seconds": 60, "when": "always"},
        "5%",
    ],
)
def test_an_idle_policy_out_of_range_is_a_400(
    api_client: APIClient, catalog: SandboxControl, policy: Any
) -> None:
    response = create(api_client, create_body(idle_policy=policy))
    assert response.status_code == 400, response.content
    assert "idle_policy" in response.json()["error"]["details"]
    assert Instance.objects.count() == 0
    assert catalog.instances() == []
