"""Every fault, set at runtime through POST /_sandbox/faults."""

from __future__ import annotations

import socket
import time
import urllib.error
from typing import Any

import pytest

from novita_sandbox.control import SandboxControlError
from tests.sandbox.helpers import VALID_CREATE, Api, http, instant_timing

INSUFFICIENT = {
    "code": 400,
    "reason": "INSUFFICIENT_RESOURCE",
    "message": "insufficient resource",
    "metadata": {},
}


def create_answer(api: Api, **changes: Any) -> Any:
    return api.post("/gpu/instance/create", {**VALID_CREATE, **changes})


def test_error_rate_one_fails_every_call_without_effect(api: Api) -> None:
    api.control.set_faults(error_rate=1.0)
    answer = create_answer(api)
    assert (answer.status, answer.body) == (
        500,
        {"code": 500, "reason": "UNKNOWN", "message": "internal error", "metadata": {}},
    )
    assert api.control.instances() == []
    assert api.control.stats()["calls"] == {"POST /gpu/instance/create": {"500": 1}}


def test_error_rate_is_a_fraction(api: Api) -> None:
    api.control.set_faults(error_rate=0.5)
    statuses = [api.get("/clusters").status for _ in range(200)]
    assert set(statuses) == {200, 500}
    assert 50 < statuses.count(500) < 150


def test_latency_delays_every_api_call(api: Api) -> None:
    api.control.set_faults(latency_ms=200)
    started = time.monotonic()
    assert api.get("/clusters").status == 200
    assert time.monotonic() - started >= 0.2


def test_fail_next_fails_the_next_matching_calls_then_goes_away(api: Api) -> None:
    instant_timing(api.control)
    faults = api.control.set_faults(
        fail_next=[
            {"path": "/gpu-instance/openapi/v1/gpu/instance/create", "count": 2, "status": 503}
        ]
    )
    assert faults["fail_next"][0]["path"] == "/gpu/instance/create"
    assert api.get("/clusters").status == 200  # another path
    for _ in range(2):
        answer = create_answer(api)
        assert (answer.status, answer.body) == (
            503,
            {"code": 503, "reason": "UNKNOWN", "message": "service unavailable", "metadata": {}},
        )
    assert api.control.instances() == []
    assert create_answer(api).status == 200
    assert api.control.faults()["fail_next"] == []


def test_fail_next_by_method_with_reason_and_message(api: Api) -> None:
    api.control.set_faults(
        fail_next=[
            {
                "method": "get",
                "status": 400,
                "reason": "CLUSTER_STATUS",
                "message": "cluster abnormal",
            }
        ]
    )
    assert api.post("/gpu/instance/stop", {"instanceId": "x"}).status == 404  # a POST: untouched
    answer = api.get("/products")
    assert (answer.status, answer.body) == (
        400,
        {"code": 400, "reason": "CLUSTER_STATUS", "message": "cluster abnormal", "metadata": {}},
    )


def test_fail_next_429_carries_retry_after(api: Api) -> None:
    api.control.set_faults(fail_next=[{"status": 429, "retry_after": 20, "for_seconds": 60}])
    for _ in range(3):
        answer = api.get("/gpu/instances")
        assert (answer.status, answer.body["reason"], answer.headers["Retry-After"]) == (
            429,
            "RATE_LIMIT_EXCEEDED",
            "20",
        )
    [rule] = api.control.faults()["fail_next"]
    assert (rule["count"], rule["for_seconds"]) == (-1, 60.0)
    assert rule["until"] > time.time() + 50
    api.control.set_faults(fail_next=[{"status": 429, "for_seconds": 0}])  # already over
    assert api.get("/gpu/instances").status == 200


def test_fail_after_effect_creates_and_still_fails(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(
        fail_next=[{"path": "/gpu/instance/create", "status": 502, "after_effect": True}]
    )
    answer = create_answer(api)
    assert (answer.status, answer.body["message"]) == (502, "bad gateway")
    [created] = api.control.instances()
    assert created["name"] == VALID_CREATE["name"]
    assert api.control.stats()["creates_by_name"] == {VALID_CREATE["name"]: 1}


def test_drop_closes_the_connection_unanswered(api: Api) -> None:
    api.control.set_faults(fail_next=[{"path": "/clusters", "drop": True}])
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        api.get("/clusters")
    assert api.get("/clusters").status == 200
    assert api.control.stats()["calls"] == {"GET /clusters": {"0": 1, "200": 1}}


def test_hang_holds_the_answer_then_sends_it(api: Api) -> None:
    api.control.set_faults(
        fail_next=[{"path": "/clusters", "status": 504, "hang_s": 0.5, "count": 2}]
    )
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("GET", api.base + "/clusters", timeout=0.05)
    answer = http("GET", api.base + "/clusters", timeout=5)
    assert (answer.status, answer.body["message"]) == (504, "gateway timeout")
    assert api.get("/clusters").status == 200
    assert api.control.stats()["calls"] == {"GET /clusters": {"200": 1, "504": 2}}


def test_hang_without_effect_creates_nothing(api: Api) -> None:
    api.control.set_faults(fail_next=[{"path": "/gpu/instance/create", "drop": True, "hang_s": 2}])
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("POST", api.base + "/gpu/instance/create", VALID_CREATE, timeout=0.2)
    assert api.control.instances() == []
    assert api.control.stats()["calls"] == {"POST /gpu/instance/create": {"0": 1}}
    assert api.control.faults()["fail_next"] == []
    assert create_answer(api).status == 200
    assert api.control.stats()["creates_by_name"] == {VALID_CREATE["name"]: 1}


def test_hang_after_effect_creates_and_never_answers_in_time(api: Api) -> None:
    api.control.set_faults(
        fail_next=[
            {"path": "/gpu/instance/create", "after_effect": True, "drop": True, "hang_s": 2}
        ]
    )
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("POST", api.base + "/gpu/instance/create", VALID_CREATE, timeout=0.2)
    [created] = api.control.instances()
    assert created["name"] == VALID_CREATE["name"]
    assert api.control.stats()["creates_by_name"] == {VALID_CREATE["name"]: 1}
    assert api.control.faults()["fail_next"] == []


def test_rate_limit_answers_429_with_retry_after(api: Api) -> None:
    api.control.set_faults(rate_limit_per_second=0.05, rate_limit_window_s=60)  # 3 per minute
    assert [api.get("/clusters").status for _ in range(3)] == [200, 200, 200]
    answer = api.get("/templates")
    assert (answer.status, answer.body) == (
        429,
        {
            "code": 429,
            "reason": "RATE_LIMIT_EXCEEDED",
            "message": "too many requests",
            "metadata": {},
        },
    )
    assert int(answer.headers["Retry-After"]) in (59, 60)
    calls = api.control.calls()
    assert [c["status"] for c in calls] == [200, 200, 200, 429]
    api.control.set_faults(rate_limit_per_second=0)
    assert api.get("/templates").status == 200


@pytest.mark.parametrize(
    ("table", "failing", "passing"),
    [
        ({"us-tx-2": 2}, [{}, {}], [{}]),
        ({"us-tx-2": -1}, [{}, {}, {}], [{"clusterId": "us-ca-6"}]),
        ({"us-tx-2": True}, [{}], [{"clusterId": "eu-nl-1"}]),
        ({"us-tx-2/4090.16c62g.sim": -1}, [{}], [{"productId": "4080s.12c46g.sim"}]),
        ({"*": 1}, [{"clusterId": "us-ca-6"}], [{}]),
    ],
)
def test_capacity_errors_per_region(
    api: Api, table: dict[str, Any], failing: list[dict[str, Any]], passing: list[dict[str, Any]]
) -> None:
    api.control.set_faults(capacity_errors=table)
    for changes in failing:
        answer = create_answer(api, **changes)
        assert (answer.status, answer.body) == (400, INSUFFICIENT)
    assert api.control.instances() == []
    for changes in passing:
        assert create_answer(api, **changes).status == 200


def test_capacity_error_counts_go_down(api: Api) -> None:
    api.control.set_faults(capacity_errors={"us-tx-2": 2, "eu-nl-1": -1})
    create_answer(api)
    assert api.control.faults()["capacity_errors"] == {"us-tx-2": 1, "eu-nl-1": -1}
    create_answer(api)
    assert api.control.faults()["capacity_errors"] == {"eu-nl-1": -1}


def test_start_capacity_errors(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    api.action("stop", iid)
    api.control.set_faults(start_capacity_errors={"us-tx-2": 1})
    assert (api.action("start", iid).status, api.action("start", iid).status) == (400, 200)


def test_lost_create_answer_closes_the_connection_after_creating(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(lose_create_answers=1)
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        create_answer(api, name="novitai-lost-1")
    [lost] = api.control.instances()
    assert (lost["name"], lost["status"]) == ("novitai-lost-1", "running")
    listed = api.get("/gpu/instances", name="novitai-lost-1").body["instances"]
    assert [i["id"] for i in listed] == [lost["id"]]
    assert create_answer(api, name="novitai-lost-2").status == 200
    stats = api.control.stats()
    assert stats["creates_by_name"] == {"novitai-lost-1": 1, "novitai-lost-2": 1}
    assert stats["calls"]["POST /gpu/instance/create"] == {"0": 1, "200": 1}
    assert api.control.faults()["lose_create_answers"] == 0


def test_lost_create_answer_in_delay_mode_answers_late(api: Api) -> None:
    api.control.set_faults(lose_create_answers=2, lose_create_mode="delay", lose_create_delay_s=0.3)
    started = time.monotonic()
    answer = create_answer(api)
    assert answer.status == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("POST", api.base + "/gpu/instance/create", VALID_CREATE, timeout=0.05)
    assert len(api.control.instances()) == 2


def test_image_pull_failure_by_name_and_next(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(pull_fail_name="*-broken", pull_fail_next=1)
    first, healthy, broken = api.create(name="a"), api.create(name="b"), api.create(name="c-broken")
    assert [api.instance(i)["status"] for i in (first, healthy, broken)] == [
        "exited",
        "running",
        "exited",
    ]
    history = [e["status"] for e in api.control.instance(broken)["status_history"]]
    assert history == ["toCreate", "creating", "pulling", "exited"]
    # the image stays broken: starting pulls again and fails again
    assert api.action("start", broken).status == 200
    body = api.instance(broken)
    assert (body["status"], body["statusError"]["state"]) == ("exited", "pulling")
    assert body["statusError"]["message"].startswith("failed to pull image: ")


def test_spot_reclaim_walks_notified_reclaiming_terminated(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create(billingMode="spot")
    view = api.control.reclaim(iid)
    assert (view["status"], view["spotStatus"]) == ("exited", "terminated")
    assert [e["status"] for e in view["status_history"]][-2:] == ["stopping", "exited"]
    body = api.instance(iid)
    assert body["spotStatus"] == "terminated"
    assert body["spotReclaimTime"] != "0"
    assert api.action("start", iid).status == 200
    assert api.instance(iid)["spotStatus"] == "running"


def test_spot_reclaim_gives_notice(api: Api) -> None:
    instant_timing(api.control, reclaim_notice=60)
    iid = api.create(billingMode="spot")
    api.control.reclaim(iid)
    body = api.instance(iid)
    assert (body["status"], body["spotStatus"]) == ("running", "notified")
    assert int(body["spotReclaimTime"]) >= time.time() + 59


def test_only_running_spot_instances_are_reclaimed(api: Api) -> None:
    instant_timing(api.control)
    on_demand = api.create()
    with pytest.raises(SandboxControlError) as error:
        api.control.reclaim(on_demand)
    assert error.value.status == 409
    spot = api.create(billingMode="spot")
    api.action("stop", spot)
    with pytest.raises(SandboxControlError):
        api.control.reclaim(spot)
    with pytest.raises(SandboxControlError) as missing:
        api.control.reclaim("nope")
    assert missing.value.status == 404


@pytest.mark.parametrize(
    ("faults", "status", "message"),
    [
        ({"not_found_status": 400}, 400, "instance not found"),
        ({"not_found_spelling": "not fount"}, 404, "instance not fount"),
        ({"not_found_status": 400, "not_found_spelling": "not fount"}, 400, "instance not fount"),
    ],
)
def test_not_found_variants(api: Api, faults: dict[str, Any], status: int, message: str) -> None:
    api.control.set_faults(**faults)
    for answer in (api.get("/gpu/instance", instanceId="x"), api.action("stop", "x")):
        assert (answer.status, answer.body) == (
            status,
            {"code": status, "reason": "RESOURCE_NOT_FOUND", "message": message, "metadata": {}},
        )


def test_list_lag_hides_new_instances_from_the_list_only(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(list_lag_s=60)
    iid = api.create()
    assert api.get("/gpu/instances").body == {"instances": [], "total": 0}
    assert api.instance(iid)["status"] == "running"
    api.control.set_faults(list_lag_s=0)
    assert api.get("/gpu/instances").body["total"] == 1


def test_list_can_omit_endpoint_urls_as_the_docs_show(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    api.control.set_faults(list_omits_endpoints=True)
    [item] = api.get("/gpu/instances").body["instances"]
    assert item["portMappings"] == [
        {"port": m["port"], "type": m["type"]} for m in api.instance(iid)["portMappings"]
    ]
    assert all(m["endpoint"] for m in api.instance(iid)["portMappings"])
    api.control.set_faults(list_omits_endpoints=False)
    [item] = api.get("/gpu/instances").body["instances"]
    assert all(m["endpoint"] for m in item["portMappings"])


def test_boolean_faults_take_booleans_only(api: Api) -> None:
    with pytest.raises(SandboxControlError) as error:
        api.control.set_faults(list_omits_endpoints=1)
    assert error.value.status == 400
    assert api.control.faults()["list_omits_endpoints"] is False


def test_vanish_removes_an_instance_at_once(api: Api) -> None:
    instant_timing(api.control, removed_linger=60)
    iid = api.create()
    view = api.control.vanish(iid)
    assert (view["status"], view["visible"], view["vanished"]) == ("removed", False, True)
    assert api.get("/gpu/instance", instanceId=iid).status == 404
    assert api.get("/gpu/instances").body["total"] == 0


def test_offer_overrides_change_availability(api: Api) -> None:
    api.control.set_offer("us-tx-2", "3090.8c31g.sim", "high")
    [dallas] = api.get("/products", clusterId="us-tx-2", productName="3090").body["data"]
    assert (dallas["availableDeploy"], dallas["inventoryState"]) == (True, "high")
    assert create_answer(api, productId="3090.8c31g.sim").status == 200
    api.control.set_offer("us-tx-2", "4090.16c62g.sim", "normal", availableDeploy=False)
    assert create_answer(api).body == INSUFFICIENT
    api.control.set_offer("as-jp-3", "4090.16c62g.sim", "low")  # a new region
    [osaka] = api.get("/products", clusterId="as-jp-3", productName="4090").body["data"]
    assert osaka["regions"] == ["AS-JP-03 (Osaka)"]
    with pytest.raises(SandboxControlError):
        api.control.set_offer("mars-1", "4090.16c62g.sim", "low")


@pytest.mark.parametrize(
    "changes",
    [
        {"no_such_fault": 1},
        {"error_rate": 2},
        {"error_rate": "0.5"},
        {"latency_ms": -1},
        {"not_found_status": 500},
        {"not_found_spelling": "gone"},
        {"lose_create_mode": "explode"},
        {"lose_create_answers": 1.5},
        {"capacity_errors": {"us-tx-2": -2}},
        {"capacity_errors": []},
        {"fail_next": {"status": 500}},
        {"fail_next": [{"status": 200}]},
        {"fail_next": [{"status": 500, "bogus": 1}]},
        {"fail_next": [{"status": 500, "count": -5}]},
        {"fail_next": [{"status": 500, "drop": "yes"}]},
        {"fail_next": [{"status": 500, "hang_s": -1}]},
        {"fail_next": [{"status": 500, "hang_s": "long"}]},
        {"rate_limit_window_s": 0},
        {"pull_fail_name": 3},
    ],
)
def test_invalid_faults_are_refused_and_change_nothing(api: Api, changes: dict[str, Any]) -> None:
    before = api.control.faults()
    with pytest.raises(SandboxControlError) as error:
        api.control.set_faults(**{"latency_ms": 5, **changes})
    assert error.value.status == 400
    assert api.control.faults() == before
