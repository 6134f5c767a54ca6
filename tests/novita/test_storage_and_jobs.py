"""Network storage and save-image jobs through the client, against the sandbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.errors import (
    InUse,
    InvalidStateChange,
    NotFound,
    RejectedInput,
    UnknownOutcome,
)
from novitai.novita.types import InstanceJob, Job, NetworkStorage, NetworkStorageMount, VolumeMount
from tests.novita.conftest import Canned, OddNovita, api_calls, create_request
from tests.sandbox.helpers import frozen_at, instant_timing

SEED = NetworkStorage(
    id="ns-7f3c21",
    name="datasets",
    size_gb=100,
    cluster_id="us-tx-2",
    cluster_name="US-TX-02 (Dallas)",
    price=Decimal(200),
    status="available",
)


def test_list_network_storages(client: NovitaClient, sandbox: SandboxControl) -> None:
    assert client.list_network_storages() == [SEED]
    assert SEED.price_usd_per_gb_day == Decimal("0.00200")
    [call] = api_calls(sandbox, "/networkstorages/list")
    assert call["status"] == 200


def test_listing_pages_with_page_no(
    client: NovitaClient, settings: Any, sandbox: SandboxControl
) -> None:
    settings.NOVITA_LIST_PAGE_SIZE = 2
    paged = get_client()
    ids = [
        paged.create_network_storage(cluster_id="eu-nl-1", name=f"vol-{n}", size_gb=10)
        for n in range(4)
    ]
    assert [s.id for s in paged.list_network_storages()] == ["ns-7f3c21", *ids]
    assert len(api_calls(sandbox, "/networkstorages/list")) == 3  # pageNo 1, 2, 3 (5 of 2)
    assert [s.id for s in paged.list_network_storages(name="vol-2")] == [ids[2]]
    assert [s.name for s in paged.list_network_storages(storage_id=ids[0])] == ["vol-0"]


def test_create_grow_rename_delete(client: NovitaClient, sandbox: SandboxControl) -> None:
    storage_id = client.create_network_storage(cluster_id="us-ca-6", name="models", size_gb=40)
    assert storage_id.startswith("ns-")
    client.update_network_storage(storage_id, size_gb=80)
    client.update_network_storage(storage_id, name="models-2")
    [volume] = client.list_network_storages(storage_id=storage_id)
    assert (volume.name, volume.size_gb, volume.cluster_id) == ("models-2", 80, "us-ca-6")
    with pytest.raises(RejectedInput) as shrink:
        client.update_network_storage(storage_id, size_gb=50)
    assert shrink.value.reason == "VALIDATOR_PARAM"
    client.delete_network_storage(storage_id)
    assert client.list_network_storages(storage_id=storage_id) == []
    with pytest.raises(NotFound) as gone:
        client.delete_network_storage(storage_id)
    assert gone.value.reason == "NETWORK_STORAGE_NOT_FOUND"
    with pytest.raises(NotFound):
        client.update_network_storage(storage_id, size_gb=90)


def test_a_volume_where_there_is_none_is_rejected(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    with pytest.raises(RejectedInput) as caught:
        client.create_network_storage(cluster_id="eu-de-1", name="x", size_gb=10)
    assert caught.value.reason == "CUR_CLUSTER_NETWORK_STORAGE_NOT_SUPPORT"
    assert [s["id"] for s in sandbox.storages()] == ["ns-7f3c21"]


def test_a_lost_create_answer_is_unknown_not_retried(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(
        fail_next=[{"path": "/networkstorage/create", "status": 502, "after_effect": True}]
    )
    with pytest.raises(UnknownOutcome):
        client.create_network_storage(cluster_id="eu-nl-1", name="lost", size_gb=10)
    assert len(api_calls(sandbox, "/networkstorage/create")) == 1
    assert [s.name for s in client.list_network_storages(name="lost")] == ["lost"]


def test_an_instance_mounts_a_volume_and_holds_it(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    instant_timing(sandbox, to_remove=60)
    instance_id = client.create_instance(
        create_request(network_storages=(NetworkStorageMount("ns-7f3c21", "/data"),))
    )
    got = client.get_instance(instance_id)
    assert got.volume_mounts == (
        VolumeMount("local", 60, "", "/"),
        VolumeMount("network", 100, "ns-7f3c21", "/data"),
    )
    [listed] = client.list_instances()
    assert listed.volume_mounts == got.volume_mounts  # sizes are strings there
    with pytest.raises(InUse) as caught:
        client.delete_network_storage("ns-7f3c21")
    assert caught.value.reason == "NETWORK_STORAGE_IN_USE"
    client.delete_instance(instance_id)
    client.delete_network_storage("ns-7f3c21")


def test_a_volume_of_another_cluster_is_rejected(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    storage_id = client.create_network_storage(cluster_id="eu-nl-1", name="x", size_gb=10)
    request = create_request(network_storages=(NetworkStorageMount(storage_id),))
    with pytest.raises(RejectedInput) as caught:
        client.create_instance(request)  # in us-tx-2
    assert caught.value.reason == "NETWORK_STORAGE_UNAVAILABLE"
    assert sandbox.instances() == []


def test_the_create_body_carries_mounts_entrypoint_and_cuda(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_novita.on("POST", "/gpu/instance/create", Canned(200, {"id": "9c41e07ab25d6f13"}))
    request = create_request(
        "novitai-body",
        entrypoint="python3 -m app",
        min_cuda_version="12.4",
        network_storages=(NetworkStorageMount("ns-1"), NetworkStorageMount("ns-2", "/models")),
    )
    odd_client.create_instance(request)
    body = odd_novita.seen("/gpu/instance/create")[0].body
    assert (body["entrypoint"], body["minCudaVersion"], body["networkStorages"]) == (
        "python3 -m app",
        "12.4",
        [{"Id": "ns-1", "mountPoint": "/network"}, {"Id": "ns-2", "mountPoint": "/models"}],
    )


def test_a_storage_create_answered_as_an_object_is_read(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_novita.on("POST", "/networkstorage/create", Canned(200, {"storageId": "ns-9"}))
    assert odd_client.create_network_storage(cluster_id="c", name="n", size_gb=10) == "ns-9"
    odd_novita.on("POST", "/networkstorage/create", Canned(200, {}))
    with pytest.raises(UnknownOutcome):
        odd_client.create_network_storage(cluster_id="c", name="n", size_gb=10)
    assert len(odd_novita.seen("/networkstorage/create")) == 2


# --- save image --------------------------------------------------------------------------------


def test_save_image_then_list_then_break(client: NovitaClient, sandbox: SandboxControl) -> None:
    instant_timing(sandbox, save_image=600)
    now = frozen_at(sandbox, 60)
    instance_id = client.create_instance(create_request())
    job_id = client.save_image(
        instance_id,
        image="ghcr.io/acme/snap:1",
        registry_auth_id="k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
    )
    assert client.list_jobs(job_id=job_id) == [
        Job(
            id=job_id,
            type="saveImage",
            state="running",
            instance_id=instance_id,
            log_address=f"{sandbox.url}/_app/{instance_id}/logs/jobs/{job_id}",
            created_at=int(now),
        )
    ]
    assert client.get_instance(instance_id).jobs == (InstanceJob(job_id, "saveImage"),)
    client.break_job(job_id)
    assert [j.state for j in client.list_jobs(state="break")] == ["break"]
    with pytest.raises(InvalidStateChange):
        client.break_job(job_id)
    with pytest.raises(NotFound) as missing:
        client.break_job("job-none")
    assert missing.value.reason == "JOB_NOT_FOUND"


def test_a_failed_job_says_why(client: NovitaClient, sandbox: SandboxControl) -> None:
    instant_timing(sandbox)
    sandbox.set_faults(save_image_fail_image="denied")
    instance_id = client.create_instance(create_request())
    job_id = client.save_image(instance_id, image="denied.example/x:1")
    [job] = client.list_jobs(job_id=job_id)
    assert (job.state, job.error, job.message) == (
        "fail",
        "PUSH_IMAGE_FAILED",
        "failed to push image denied.example/x:1: denied",
    )


def test_save_image_of_a_booting_instance_is_invalid(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_timing(pulling=60)
    instance_id = client.create_instance(create_request())
    with pytest.raises(InvalidStateChange):
        client.save_image(instance_id, image="x/y:1")
    assert len(api_calls(sandbox, "/job/save/image")) == 1
    assert sandbox.jobs() == []


def test_jobs_read_every_page(client: NovitaClient, settings: Any, sandbox: SandboxControl) -> None:
    instant_timing(sandbox, save_image=600)
    settings.NOVITA_LIST_PAGE_SIZE = 2
    paged = get_client()
    ids = [
        paged.save_image(paged.create_instance(create_request(f"novitai-j{n}")), image="x/y:1")
        for n in range(3)
    ]
    assert [j.id for j in paged.list_jobs()] == ids[::-1]
    assert [j.id for j in paged.list_jobs(type="saveImage", state="running")] == ids[::-1]


def test_a_job_answer_without_an_id_is_unknown(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_novita.on("POST", "/job/save/image", Canned(200, {"jobId": ""}))
    with pytest.raises(UnknownOutcome):
        odd_client.save_image("9c41e07ab25d6f13", image="x/y:1")
    assert odd_novita.seen("/job/save/image")[0].body == {
        "instanceId": "9c41e07ab25d6f13",
        "image": "x/y:1",
    }


def test_odd_jobs_parse(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    odd_novita.on(
        "GET",
        "/jobs",
        Canned(
            200,
            {
                "jobs": [
                    {"Id": "job-1", "type": "instanceMigrate", "state": "success", "x": 1},
                    {"id": "job-2", "state": {"state": "pulling"}, "createdAt": 1754035200},
                ],
                "total": "2",
            },
        ),
    )
    assert odd_client.list_jobs() == [
        Job(id="job-1", type="instanceMigrate", state="success"),
        Job(id="job-2", type="", state="pulling", created_at=1754035200),
    ]
