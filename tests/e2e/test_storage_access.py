"""Issue 17's acceptance, end to end: a real worker (and beat), the sandbox over HTTP with numeric
cluster ids, no instance timestamps and empty product regions — a volume, an instance mounting it
in the volume's cluster, ssh and logs, the password only from …/ssh/, the template's entrypoint
reaching the create, a save-image job that succeeds and one cancelled, and the GPU going quiet
stopping the instance after for_seconds."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.models import InstanceEvent
from novita_sandbox.control import SandboxControl
from tests.e2e.conftest import Worker
from tests.e2e.test_lifecycle import act, until
from tests.instances.conftest import create, create_body
from tests.instances.helpers import wait_for
from tests.sandbox.helpers import Api

pytestmark = [pytest.mark.e2e]


def image_saves(api_client: APIClient, sandbox: SandboxControl, path: str) -> None:
    """One save that succeeds (the worker follows Novita's job), one cancelled while it runs."""
    saved = api_client.post(f"{path}save-image/", {"image": "ghcr.io/acme/vllm:v2"}, format="json")
    assert saved.status_code == 202, saved.content

    def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = api_client.get(f"/api/v1/image-saves/{saved.json()['id']}/").json()
        return body if body["status"] in ("succeeded", "failed") else None

    done = wait_for(ended, 30, what="the image save to end")
    assert done is not None
    assert done["status"] == "succeeded"
    assert done["novita_job_id"]
    sandbox.set_timing(save_image=600)
    second = api_client.post(f"{path}save-image/", {"image": "ghcr.io/acme/vllm:v3"}, format="json")
    assert second.status_code == 202, second.content
    save_id = second.json()["id"]
    wait_for(
        lambda: api_client.get(f"/api/v1/image-saves/{save_id}/").json()["status"] == "running",
        30,
        what="the second save to run",
    )
    cancelled = api_client.post(f"/api/v1/image-saves/{save_id}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    assert [j["state"] for j in sandbox.jobs()] == ["success", "break"]


def test_volume_ssh_entrypoint_and_gpu_idle_in_the_strict_world(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    sandbox.set_fidelity(cluster_ids="numeric", instance_timestamps=False, product_regions="empty")
    sandbox.set_timing(metrics_lag=0)

    made = api_client.post(
        "/api/v1/volumes/", {"name": "data", "region": "EU-01", "size_gb": 20}, format="json"
    )
    assert made.status_code == 201, made.content
    volume = made.json()
    assert (volume["region"], volume["price_per_gb_day"]) == ("EU-01", "0.002")

    body = create_body(
        name="e2e-strict",
        template_id="107672",  # vllm-openai: an entrypoint, CUDA 12.1
        volumes=[{"volume_id": volume["id"], "mount_path": "/data"}],
        idle_policy={"gpu_utilization_below": 5, "for_seconds": 60},
    )
    response = create(api_client, body)
    assert response.status_code == 202, response.content
    instance_id = response.json()["id"]
    ready = until(api_client, instance_id, "ready", timeout=60)

    assert ready["region"] == "EU-01"
    assert ready["volumes"] == [{"volume_id": volume["id"], "name": "data", "mount_path": "/data"}]
    [upstream] = sandbox.instances()
    assert upstream["clusterId"] == "eu-nl-1"  # the control API's slug for "5"
    assert upstream["networkStorages"] == [
        {"Id": volume["novita_storage_id"], "mountPoint": "/data"}
    ]
    assert upstream["entrypoint"] == "python3 -m vllm.entrypoints.openai.api_server"
    assert upstream["minCudaVersion"] == "12.1"
    detail = Api(sandbox).instance(upstream["id"])
    assert detail["clusterId"] == "5"
    assert "createdAt" not in detail

    # Where to ssh is read after it is ready, at low priority (instances.access_details_read).
    path = f"/api/v1/instances/{instance_id}/"
    read = wait_for(
        lambda: (body := api_client.get(path).json())["ssh"] and body,
        10,
        what="the ssh details (the access read)",
    )
    ssh, logs_url = read["ssh"], read["logs_url"]
    assert ssh["command"] == detail["connectComponentSSH"]["sshCommand"]
    assert (ssh["user"], ssh["host"]) == ("root", "127.0.0.1")
    assert logs_url == detail["connectComponentLog"]["instanceLogAddress"]
    password = detail["connectComponentSSH"]["password"]
    for listed in (path, "/api/v1/instances/", f"{path}events/"):
        assert password not in api_client.get(listed).content.decode()
    credentials = api_client.get(f"{path}ssh/")
    assert credentials.json()["password"] == password
    assert InstanceEvent.objects.filter(instance_id=instance_id, reason="ssh_credentials_read")

    image_saves(api_client, sandbox, path)

    in_use = api_client.delete(f"/api/v1/volumes/{volume['id']}/")
    assert in_use.status_code == 409
    assert in_use.json()["error"]["details"]["instances"][0]["name"] == "e2e-strict"

    # The GPU has been at 0 % since it runs (the sandbox's default): a few of Novita's minutes
    # later the idle pass has read points below 5 % for 60 s and stops it.
    sandbox.advance_clock(180)
    stopped = until(api_client, instance_id, "stopped", timeout=60)
    assert stopped["gpu_utilization"] == 0.0
    assert stopped["gpu_utilization_at"] is not None
    event = InstanceEvent.objects.filter(instance_id=instance_id, reason="idle_timeout").get()
    assert event.message == "GPU utilization below 5% for 60 s: stopped."

    act(api_client, instance_id, "delete")
    until(api_client, instance_id, "terminated", timeout=60)
    assert api_client.delete(f"/api/v1/volumes/{volume['id']}/").status_code == 204
    assert [s["deleted_at"] is not None for s in sandbox.storages() if s["name"] != "datasets"] == [
        True
    ]
