"""Fidelity switches: the other plausible readings of Novita's docs (novita-api.md §7.5)."""

from __future__ import annotations

import pytest

from novita_sandbox.control import SandboxControlError
from tests.sandbox.helpers import VALID_CREATE, Api, instant_timing


def test_numeric_cluster_ids(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_fidelity(cluster_ids="numeric")
    clusters = api.get("/clusters").body["data"]
    assert [(c["id"], c["name"]) for c in clusters] == [
        ("1", "US-01"),
        ("2", "US-02"),
        ("5", "EU-01"),
        ("6", "EU-02"),
        ("8", "AS-01"),
    ]
    [product] = api.get("/products", clusterId="5", productName="4090").body["data"]
    assert (product["regions"], product["inventoryState"]) == (["EU-01"], "low")
    assert api.get("/products", clusterId="eu-nl-1").body == {"data": []}  # slugs are not ids now
    iid = api.create(clusterId="5")
    body = api.instance(iid)
    assert (body["clusterId"], body["clusterName"]) == ("5", "EU-01")
    assert api.control.instance(iid)["clusterId"] == "eu-nl-1"  # control keeps slugs
    slug = api.post("/gpu/instance/create", {**VALID_CREATE, "clusterId": "eu-nl-1"})
    assert (slug.status, slug.body["message"]) == (400, "clusterId eu-nl-1 does not exist")
    sid = api.post(
        "/networkstorage/create", {"clusterId": "5", "storageName": "x", "storageSize": 10}
    ).body
    [storage] = api.get("/networkstorages/list", storageId=sid).body["data"]
    assert (storage["clusterId"], storage["clusterName"]) == ("5", "EU-01")


def test_no_instance_timestamps(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_fidelity(instance_timestamps=False)
    iid = api.create()
    body = api.instance(iid)
    [item] = api.get("/gpu/instances").body["instances"]
    for key in ("createdAt", "lastStartedAt", "lastStoppedAt"):
        assert key not in body
        assert key not in item


def test_empty_product_regions(api: Api) -> None:
    api.control.set_fidelity(product_regions="empty")
    products = (
        api.get("/products").body["data"] + api.get("/products", clusterId="us-tx-2").body["data"]
    )
    assert {tuple(p["regions"]) for p in products} == {()}


def test_spot_status_only_on_the_list(api: Api) -> None:
    instant_timing(api.control, reclaim_notice=60)
    api.control.set_fidelity(spot_status_on_get=False)
    iid = api.create(billingMode="spot")
    api.control.reclaim(iid)
    body = api.instance(iid)
    assert "spotStatus" not in body
    assert "spotReclaimTime" not in body
    [item] = api.get("/gpu/instances").body["instances"]
    assert item["spotStatus"] == "notified"
    assert item["spotReclaimTime"] != "0"


def test_switches_are_checked_and_reset(api: Api) -> None:
    defaults = api.control.fidelity()
    assert defaults == {
        "cluster_ids": "slug",
        "instance_timestamps": True,
        "product_regions": "names",
        "spot_status_on_get": True,
        "bills_settle_hourly": False,
    }
    for bad in ({"cluster_ids": "uuid"}, {"instance_timestamps": "no"}, {"colour": "blue"}):
        with pytest.raises(SandboxControlError) as error:
            api.control.set_fidelity(**bad)
        assert error.value.status == 400
    api.control.set_fidelity(cluster_ids="numeric", spot_status_on_get=False)
    api.control.reset()
    assert api.control.fidelity() == defaults
