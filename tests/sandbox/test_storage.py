"""Network storage (novita-api.md §2.9, §7.3): list, create, grow, delete, mount at create."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.helpers import VALID_CREATE, Api, instant_timing

SEED = {
    "storageId": "ns-7f3c21",
    "storageName": "datasets",
    "storageSize": 100,
    "clusterId": "us-tx-2",
    "clusterName": "US-TX-02 (Dallas)",
    "price": "200",
    "status": "available",
}


def error(reason: str, message: str) -> dict[str, Any]:
    return {"code": 400, "reason": reason, "message": message, "metadata": {}}


def create(api: Api, **changes: Any) -> Any:
    body = {"clusterId": "eu-nl-1", "storageName": "models", "storageSize": 50, **changes}
    return api.post("/networkstorage/create", body)


def test_the_seed_volume_is_listed(api: Api) -> None:
    answer = api.get("/networkstorages/list", pageNo=1, pageSize=10)
    assert (answer.status, answer.body) == (200, {"data": [SEED], "total": 1})


def test_create_answers_a_bare_string_id(api: Api) -> None:
    answer = create(api)
    assert answer.status == 200
    assert isinstance(answer.body, str)
    assert answer.body.startswith("ns-")
    listed = api.get("/networkstorages/list", storageId=answer.body).body
    assert listed == {
        "data": [
            {
                "storageId": answer.body,
                "storageName": "models",
                "storageSize": 50,
                "clusterId": "eu-nl-1",
                "clusterName": "EU-NL-01 (Amsterdam)",
                "price": "200",
                "status": "available",
            }
        ],
        "total": 1,
    }


def test_list_pages_and_filters(api: Api) -> None:
    ids = [create(api, storageName=f"vol-{n}").body for n in range(3)]

    def listed(**params: Any) -> list[str]:
        return [s["storageId"] for s in api.get("/networkstorages/list", **params).body["data"]]

    assert listed() == ["ns-7f3c21", *ids]
    assert listed(pageNo=1, pageSize=2) == ["ns-7f3c21", ids[0]]
    assert listed(pageNo=2, pageSize=2) == ids[1:]
    assert listed(storageName="VOL-1") == [ids[1]]
    assert api.get("/networkstorages/list", pageSize=2).body["total"] == 4


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"storageSize": 9}, error("VALIDATOR_PARAM", "storageSize must be >= 10")),
        (
            {"storageSize": 10_001},
            error("NETWORK_STORAGE_TOO_LARGE", "storageSize must be <= 10000"),
        ),
        ({"storageSize": "50"}, error("VALIDATOR_PARAM", "storageSize must be an integer")),
        ({"storageName": ""}, error("VALIDATOR_PARAM", "storageName is required")),
        ({"clusterId": "mars-1"}, error("VALIDATOR_PARAM", "clusterId mars-1 does not exist")),
        (
            {"clusterId": "eu-de-1"},
            error(
                "CUR_CLUSTER_NETWORK_STORAGE_NOT_SUPPORT",
                "cluster eu-de-1 does not support network storage",
            ),
        ),
    ],
)
def test_create_is_validated(api: Api, changes: dict[str, Any], expected: Any) -> None:
    answer = create(api, **changes)
    assert (answer.status, answer.body) == (400, expected)
    assert [s["id"] for s in api.control.storages()] == ["ns-7f3c21"]


def test_update_grows_and_renames(api: Api) -> None:
    sid = create(api).body
    assert api.post("/networkstorage/update", {"storageId": sid, "storageSize": 80}).body == {}
    assert api.post("/networkstorage/update", {"storageId": sid, "storageName": "m2"}).body == {}
    [item] = api.get("/networkstorages/list", storageId=sid).body["data"]
    assert (item["storageName"], item["storageSize"]) == ("m2", 80)
    shrink = api.post("/networkstorage/update", {"storageId": sid, "storageSize": 70})
    assert (shrink.status, shrink.body) == (
        400,
        error("VALIDATOR_PARAM", "storageSize can only grow"),
    )
    assert [s["size"] for s in api.control.storages() if s["id"] == sid] == [80]
    missing = api.post("/networkstorage/update", {"storageId": "ns-none", "storageSize": 80})
    assert missing.body == error("NETWORK_STORAGE_NOT_FOUND", "network storage not found")


def test_delete_then_gone(api: Api) -> None:
    sid = create(api).body
    assert api.post("/networkstorage/delete", {"storageId": sid}).body == {}
    assert api.get("/networkstorages/list", storageId=sid).body == {"data": [], "total": 0}
    again = api.post("/networkstorage/delete", {"storageId": sid})
    assert (again.status, again.body["reason"]) == (400, "NETWORK_STORAGE_NOT_FOUND")


def test_an_instance_mounts_volumes_of_its_cluster(api: Api) -> None:
    instant_timing(api.control)
    sid = create(api, storageSize=40).body
    iid = api.create(
        clusterId="eu-nl-1", networkStorages=[{"Id": sid, "mountPoint": "/models"}, {"Id": sid}]
    )
    assert api.instance(iid)["volumeMounts"] == [
        {"type": "local", "size": 60, "id": "", "mountPath": "/"},
        {"type": "network", "size": 40, "id": sid, "mountPath": "/models"},
        {"type": "network", "size": 40, "id": sid, "mountPath": "/network"},
    ]
    [item] = api.get("/gpu/instances").body["instances"]
    assert item["volumeMounts"][1] == {
        "type": "network",
        "size": "40",
        "id": sid,
        "mountPath": "/models",
    }


def test_a_volume_pins_a_create_without_cluster_to_its_own(api: Api) -> None:
    instant_timing(api.control)
    sid = create(api, clusterId="us-ca-6").body
    for _ in range(5):
        iid = api.create(clusterId="", networkStorages=[{"Id": sid}])
        assert api.instance(iid)["clusterId"] == "us-ca-6"


def test_a_volume_of_another_cluster_or_none_is_refused(api: Api) -> None:
    sid = create(api).body  # eu-nl-1
    other = api.post("/gpu/instance/create", {**VALID_CREATE, "networkStorages": [{"Id": sid}]})
    assert (other.status, other.body) == (
        400,
        error("NETWORK_STORAGE_UNAVAILABLE", f"network storage {sid} is not in cluster us-tx-2"),
    )
    missing = api.post(
        "/gpu/instance/create", {**VALID_CREATE, "networkStorages": [{"Id": "ns-none"}]}
    )
    assert missing.body == error("NETWORK_STORAGE_NOT_FOUND", "network storage not found")
    assert api.control.instances() == []


def test_a_mounted_volume_cannot_be_deleted_until_the_instance_is(api: Api) -> None:
    instant_timing(api.control, to_remove=60)
    iid = api.create(networkStorages=[{"Id": "ns-7f3c21"}])
    api.action("stop", iid)  # a stopped instance still holds it
    in_use = api.post("/networkstorage/delete", {"storageId": "ns-7f3c21"})
    assert (in_use.status, in_use.body) == (
        400,
        error("NETWORK_STORAGE_IN_USE", "network storage is in use"),
    )
    api.action("delete", iid)  # accepted: it lets go at once
    assert api.post("/networkstorage/delete", {"storageId": "ns-7f3c21"}).body == {}


def test_reset_brings_back_only_the_seed_volume(api: Api) -> None:
    create(api)
    api.post("/networkstorage/delete", {"storageId": "ns-7f3c21"})
    api.control.reset()
    assert api.get("/networkstorages/list").body == {"data": [SEED], "total": 1}
