"""novitai against the sandbox's other readings of Novita's docs (docs/novita-api.md §7.5):
numeric cluster ids named "EU-01", no instance timestamps, products with `regions: []`, spot
status only on the list — and a template's entrypoint and minCudaVersion reaching the create."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.models import Region
from catalog.services import catalog_sync
from instances.access import instances_access_details_read
from instances.models import Instance, InstanceStatus
from novita_sandbox.control import SandboxControl
from tests.instances.conftest import create, create_body
from tests.instances.helpers import monitor_until, provision, reasons

pytestmark = pytest.mark.django_db


def strict_world(sandbox: SandboxControl) -> None:
    sandbox.set_fidelity(
        cluster_ids="numeric",
        instance_timestamps=False,
        product_regions="empty",
        spot_status_on_get=False,
    )


def test_the_catalog_and_a_create_with_numeric_ids_and_no_timestamps(
    novita: SandboxControl, api_client: APIClient
) -> None:
    strict_world(novita)
    assert catalog_sync().outcome == "success"
    assert list(Region.objects.order_by("code").values_list("cluster_id", "code")) == [
        ("8", "AS-01"),
        ("5", "EU-01"),
        ("6", "EU-02"),
        ("1", "US-01"),
        ("2", "US-02"),
    ]
    response = create(api_client, create_body(region="EU-01"))
    assert response.status_code == 202, response.content
    instance = provision(Instance.objects.get(pk=response.json()["id"]))
    assert (instance.cluster_id, instance.region) == ("5", "EU-01")
    ready = monitor_until(instance, InstanceStatus.READY)
    # (the control API keeps the slugs: "5" is eu-nl-1)
    assert [(i["name"], i["clusterId"]) for i in novita.instances()] == [
        (ready.novita_name, "eu-nl-1")
    ]
    assert instances_access_details_read() == 1
    body = api_client.get(f"/api/v1/instances/{ready.pk}/").json()
    assert body["region"] == "EU-01"
    assert body["ssh"]["user"] == "root"


def test_a_lost_create_answer_is_found_by_name_without_timestamps(
    novita: SandboxControl, api_client: APIClient
) -> None:
    strict_world(novita)
    assert catalog_sync().outcome == "success"
    novita.set_faults(lose_create_answers=1, lose_create_mode="close")
    response = create(api_client, create_body())
    instance = provision(Instance.objects.get(pk=response.json()["id"]))
    assert instance.status == InstanceStatus.STARTING
    assert "create_found_by_name" in reasons(instance)
    assert [i["id"] for i in novita.instances()] == [instance.novita_instance_id]


def test_a_reclaim_is_seen_with_spot_status_only_on_the_list(
    novita: SandboxControl, api_client: APIClient
) -> None:
    strict_world(novita)
    assert catalog_sync().outcome == "success"
    response = create(api_client, create_body(billing_mode="spot"))
    ready = monitor_until(
        provision(Instance.objects.get(pk=response.json()["id"])), InstanceStatus.READY
    )
    novita.reclaim(ready.novita_instance_id)
    preempted = monitor_until(ready, InstanceStatus.PREEMPTED)
    assert preempted.upstream_status.split("/")[1] in ("notified", "reclaiming", "terminated")


def test_a_templates_entrypoint_and_cuda_reach_the_create(
    make: Any, catalog: SandboxControl
) -> None:
    instance = provision(make(template_id="107672"))  # vllm-openai: entrypoint, CUDA 12.1
    [sent] = catalog.instances()
    assert sent["id"] == instance.novita_instance_id
    assert (sent["entrypoint"], sent["minCudaVersion"], sent["command"]) == (
        "python3 -m vllm.entrypoints.openai.api_server",
        "12.1",
        "--model Qwen/Qwen2.5-7B-Instruct --port 8000",  # the template's start command
    )


def test_a_template_without_them_sends_neither(make: Any, catalog: SandboxControl) -> None:
    provision(make())  # comfyui
    [sent] = catalog.instances()
    assert (sent["entrypoint"], sent["minCudaVersion"]) == ("", "")
