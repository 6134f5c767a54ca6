"""Capacity turned off and on per product and billing mode; spot reclaim notices with lead time."""

from __future__ import annotations

from typing import Any

import pytest

from novita_sandbox.control import SandboxControlError
from tests.sandbox.helpers import VALID_CREATE, Api, frozen_at, instant_timing

INSUFFICIENT = {
    "code": 400,
    "reason": "INSUFFICIENT_RESOURCE",
    "message": "insufficient resource",
    "metadata": {},
}


def availability(api: Api, **params: Any) -> tuple[bool, str]:
    [product] = api.get("/products", productName="4090", **params).body["data"]
    return product["availableDeploy"], product["inventoryState"]


def test_spot_capacity_off_refuses_spot_creates_only(api: Api) -> None:
    instant_timing(api.control)
    off = api.control.set_capacity("4090.16c62g.sim", False, billing_mode="spot")
    assert off == [{"clusterId": "*", "productId": "4090.16c62g.sim", "billingMode": "spot"}]
    answer = api.post("/gpu/instance/create", {**VALID_CREATE, "billingMode": "spot"})
    assert (answer.status, answer.body) == (400, INSUFFICIENT)
    assert api.control.instances() == []
    assert api.create(billingMode="onDemand")
    # the listing shows it where Novita's would: asked for spot, it is unavailable
    assert availability(api, billingMethod="spot") == (False, "none")
    assert availability(api, billingMethod="spot", clusterId="us-tx-2") == (False, "none")
    assert availability(api, billingMethod="onDemand") == (True, "high")
    assert availability(api) == (True, "high")  # onDemand is the default mode
    assert api.control.set_capacity("4090.16c62g.sim", True, billing_mode="spot") == []
    assert availability(api, billingMethod="spot") == (True, "high")
    assert api.create(billingMode="spot")


def test_capacity_off_in_one_cluster(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_capacity("4090.16c62g.sim", False, cluster_id="us-tx-2")
    refused = api.post("/gpu/instance/create", VALID_CREATE)  # clusterId us-tx-2
    assert (refused.status, refused.body) == (400, INSUFFICIENT)
    assert api.create(clusterId="us-ca-6")
    assert availability(api, clusterId="us-tx-2") == (False, "none")
    assert availability(api, clusterId="us-ca-6") == (True, "normal")
    assert availability(api) == (True, "normal")  # the best elsewhere
    # no clusterId: never the cluster without capacity
    clusters = {api.instance(api.create(clusterId=""))["clusterId"] for _ in range(8)}
    assert "us-tx-2" not in clusters


def test_capacity_off_for_every_mode_everywhere(api: Api) -> None:
    api.control.set_capacity("4090.16c62g.sim", False)
    for mode in ("onDemand", "spot"):
        answer = api.post("/gpu/instance/create", {**VALID_CREATE, "billingMode": mode})
        assert answer.body == INSUFFICIENT
    assert api.post("/gpu/instance/create", {**VALID_CREATE, "clusterId": ""}).body == INSUFFICIENT
    assert availability(api) == (False, "none")


@pytest.mark.parametrize(
    "payload",
    [
        {"productId": "nope", "available": False},
        {"productId": "4090.16c62g.sim", "available": "no"},
        {"productId": "4090.16c62g.sim", "available": False, "billingMode": "yearly"},
        {"productId": "4090.16c62g.sim", "available": False, "clusterId": "mars-1"},
    ],
)
def test_bad_capacity_changes_are_refused(api: Api, payload: dict[str, Any]) -> None:
    from tests.sandbox.helpers import http

    answer = http("POST", api.control.url + "/_sandbox/capacity", payload, key=None)
    assert answer.status == 400
    assert api.control.capacity() == []


def test_reset_turns_capacity_back_on(api: Api) -> None:
    api.control.set_capacity("4090.16c62g.sim", False)
    api.control.reset()
    assert api.control.capacity() == []


# --- spot reclaim notices -------------------------------------------------------------------------


def test_a_reclaim_notice_shows_in_the_list_with_its_time(api: Api) -> None:
    instant_timing(api.control)
    now = frozen_at(api.control, 60)
    iid = api.create(billingMode="spot")
    api.control.reclaim(iid, notice=300, reclaiming=30)
    [item] = api.get("/gpu/instances").body["instances"]
    assert (item["status"], item["spotStatus"], item["spotReclaimTime"]) == (
        "running",
        "notified",
        str(int(now + 300)),
    )
    api.control.advance_clock(299)
    assert api.instance(iid)["spotStatus"] == "notified"
    api.control.advance_clock(1)
    assert (api.instance(iid)["status"], api.instance(iid)["spotStatus"]) == (
        "stopping",
        "reclaiming",
    )
    api.control.advance_clock(30)
    body = api.instance(iid)
    assert (body["status"], body["spotStatus"], body["spotReclaimTime"]) == (
        "exited",
        "terminated",
        str(int(now + 300)),
    )


def test_a_spot_instance_without_a_reclaim_has_time_zero(api: Api) -> None:
    instant_timing(api.control)
    api.create(billingMode="spot")
    [item] = api.get("/gpu/instances").body["instances"]
    assert (item["spotStatus"], item["spotReclaimTime"]) == ("running", "0")


def test_reclaim_lead_times_are_checked(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create(billingMode="spot")
    with pytest.raises(SandboxControlError) as error:
        api.control.reclaim(iid, notice=-1)
    assert error.value.status == 400
    assert api.instance(iid)["spotStatus"] == "running"
