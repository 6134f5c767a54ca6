"""Network volumes through /api/v1/volumes/ against the sandbox over HTTP, and instances that
mount them: placed in the volume's cluster, the mount shown and sent, the volume not deletable
while mounted; every bad input a 400 naming the field, nothing created, nothing sent."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.actions import instance_action_run
from instances.models import Instance, InstanceStatus
from novita_sandbox.control import SandboxControl
from storage.models import Volume, VolumeStatus
from tests.instances.conftest import catalog, create, create_body, novita  # noqa: F401 (fixtures)
from tests.instances.helpers import monitor_until, provision

pytestmark = pytest.mark.django_db

SEEDED = 1  # the sandbox starts with one volume of its own (ns-7f3c21)


def new_volume(client: APIClient, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/volumes/",
        {"name": "data", "region": "EU-NL-01", "size_gb": 10, **body},
        format="json",
    )
    assert response.status_code == 201, response.content
    return dict(response.json())


def upstream(sandbox: SandboxControl) -> list[dict[str, Any]]:
    return [s for s in sandbox.storages() if s["deleted_at"] is None]


def error_fields(response: Any) -> set[str]:
    assert response.status_code == 400, response.content
    return set(response.json()["error"]["details"])


def test_create_list_retrieve_rename_grow_delete(
    api_client: APIClient,
    catalog: SandboxControl,  # noqa: F811
) -> None:
    body = new_volume(api_client, size_gb=50)
    volume = Volume.objects.get()
    assert body == {
        "id": str(volume.pk),
        "name": "data",
        "status": "available",
        "region": "EU-NL-01",
        "size_gb": 50,
        "novita_storage_id": volume.novita_storage_id,
        "price_per_gb_day": "0.002",
        "cost_per_day": "0.10",
        "created_at": body["created_at"],
    }
    [made] = [s for s in upstream(catalog) if s["id"] == volume.novita_storage_id]
    assert (made["name"], made["clusterId"], made["size"]) == (volume.novita_name, "eu-nl-1", 50)
    assert volume.novita_name == f"novitai-vol-{volume.pk.hex[:12]}"

    listed = api_client.get("/api/v1/volumes/").json()
    assert [v["id"] for v in listed["results"]] == [str(volume.pk)]
    path = f"/api/v1/volumes/{volume.pk}/"
    assert api_client.get(path).json() == body

    renamed = api_client.patch(path, {"name": "datasets"}, format="json")
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "datasets"
    grown = api_client.patch(path, {"size_gb": 80}, format="json")
    assert (grown.status_code, grown.json()["size_gb"]) == (200, 80)
    [after] = [s for s in upstream(catalog) if s["id"] == volume.novita_storage_id]
    assert after["size"] == 80
    assert error_fields(api_client.patch(path, {"size_gb": 40}, format="json")) == {"size_gb"}
    assert error_fields(api_client.patch(path, {}, format="json")) == {"non_field_errors"}

    assert api_client.delete(path).status_code == 204
    assert Volume.objects.get().status == VolumeStatus.DELETED
    assert len(upstream(catalog)) == SEEDED
    assert api_client.get(path).status_code == 404
    assert api_client.get("/api/v1/volumes/").json()["count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"size_gb": 9}, "size_gb"),
        ({"size_gb": 10001}, "size_gb"),
        ({"size_gb": "10"}, "size_gb"),
        ({"region": "NO-WHERE"}, "region"),
        ({"region": "EU-DE-01"}, "region"),  # no network storage there
        ({"name": "Not A Name"}, "name"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_volume_input_is_a_400_and_nothing_is_sent(
    api_client: APIClient,
    catalog: SandboxControl,  # noqa: F811
    body: dict[str, Any],
    field: str,
) -> None:
    response = api_client.post(
        "/api/v1/volumes/",
        {"name": "data", "region": "EU-NL-01", "size_gb": 10, **body},
        format="json",
    )
    assert error_fields(response) == {field}
    assert Volume.objects.count() == 0
    assert len(upstream(catalog)) == SEEDED


def test_a_name_is_taken_once(api_client: APIClient, catalog: SandboxControl) -> None:  # noqa: F811
    new_volume(api_client)
    again = api_client.post(
        "/api/v1/volumes/", {"name": "data", "region": "US-TX-02", "size_gb": 10}, format="json"
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "volume_name_taken")
    assert len(upstream(catalog)) == SEEDED + 1


def test_another_tenants_volume_is_a_404(
    api_client: APIClient,
    other_tenant_client: APIClient,
    catalog: SandboxControl,  # noqa: F811
) -> None:
    path = f"/api/v1/volumes/{new_volume(api_client)['id']}/"
    assert other_tenant_client.get(path).status_code == 404
    assert other_tenant_client.patch(path, {"name": "mine"}, format="json").status_code == 404
    assert other_tenant_client.delete(path).status_code == 404
    assert other_tenant_client.get("/api/v1/volumes/").json()["count"] == 0
    assert api_client.get("/api/v1/volumes/not-a-uuid/").status_code == 404
    assert Volume.objects.get().status == VolumeStatus.AVAILABLE


def test_an_instance_mounting_a_volume_lands_in_its_cluster(
    api_client: APIClient,
    catalog: SandboxControl,  # noqa: F811
) -> None:
    volume = new_volume(api_client)  # EU-NL-01
    response = create(api_client, create_body(volumes=[{"volume_id": volume["id"]}]))
    assert response.status_code == 202, response.content
    assert response.json()["volumes"] == [
        {"volume_id": volume["id"], "name": "data", "mount_path": "/workspace"}
    ]
    instance = provision(Instance.objects.get(pk=response.json()["id"]))
    assert (instance.region, instance.cluster_id) == ("EU-NL-01", "eu-nl-1")
    [sent] = catalog.instances()
    assert sent["networkStorages"] == [
        {"Id": volume["novita_storage_id"], "mountPoint": "/workspace"}
    ]
    ready = monitor_until(instance, InstanceStatus.READY)

    path = f"/api/v1/volumes/{volume['id']}/"
    refused = api_client.delete(path)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "volume_in_use"
    assert error["details"]["instances"] == [
        {"id": str(ready.pk), "name": "trainer-1", "status": "ready"}
    ]
    assert len(upstream(catalog)) == SEEDED + 1

    gone = api_client.delete(f"/api/v1/instances/{ready.pk}/")
    instance_action_run(job_id=gone.json()["job"]["id"])
    monitor_until(ready, InstanceStatus.TERMINATED)
    assert api_client.delete(path).status_code == 204
    assert len(upstream(catalog)) == SEEDED


@pytest.mark.parametrize(
    ("mounts", "extra"),
    [
        ([{"mount_path": "workspace"}], {}),
        ([{"mount_path": "/"}], {}),
        ([{"mount_path": "/data/../etc"}], {}),
        ([{"mount_path": "/data"}, {"mount_path": "/data", "other": True}], {}),
        ([{"volume_id": "nope"}], {}),
        ([{"volume_id": str(uuid.uuid4())}], {}),
        ([{}], {"region": "US-TX-02"}),  # the volume is in EU-NL-01
    ],
)
def test_bad_mounts_are_a_400_naming_volumes(
    api_client: APIClient,
    catalog: SandboxControl,  # noqa: F811
    mounts: list[dict[str, Any]],
    extra: dict[str, Any],
) -> None:
    first = new_volume(api_client)["id"]
    second = new_volume(api_client, name="more")["id"]
    body_mounts = []
    for mount in mounts:
        volume_id = second if mount.pop("other", False) else first
        body_mounts.append({"volume_id": volume_id, **mount})
    response = create(api_client, create_body(volumes=body_mounts, **extra))
    assert error_fields(response) == {"volumes"}
    assert Instance.objects.count() == 0
    assert catalog.instances() == []


def test_another_tenants_volume_cannot_be_mounted(
    api_client: APIClient,
    other_tenant_client: APIClient,
    catalog: SandboxControl,  # noqa: F811
) -> None:
    theirs = new_volume(other_tenant_client)["id"]
    response = create(api_client, create_body(volumes=[{"volume_id": theirs}]))
    assert error_fields(response) == {"volumes"}
    assert f"No such volume: {theirs}." in response.json()["error"]["details"]["volumes"]
