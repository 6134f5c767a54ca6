"""The control endpoints: stats, the instance ledger, the call log, timing, reset."""

from __future__ import annotations

import time

import pytest

from novita_sandbox.control import SandboxControl, SandboxControlError
from tests.sandbox.helpers import Api, http, instant_timing


def test_stats_count_calls_statuses_and_creates(api: Api) -> None:
    instant_timing(api.control)
    a = api.create(name="novitai-ab12")
    api.create(name="novitai-ab12")
    b = api.create(name="novitai-cd34")
    api.action("stop", b)
    api.action("start", a)  # invalid: running
    api.get("/gpu/instances")
    api.get("/gpu/instance", instanceId="nope")
    assert api.control.stats() == {
        "calls": {
            "GET /gpu/instance": {"404": 1},
            "GET /gpu/instances": {"200": 1},
            "POST /gpu/instance/create": {"200": 3},
            "POST /gpu/instance/start": {"400": 1},
            "POST /gpu/instance/stop": {"200": 1},
        },
        "app_calls": {},
        "instances_by_status": {"exited": 1, "running": 2},
        "creates_by_name": {"novitai-ab12": 2, "novitai-cd34": 1},
        "live_instances": 3,
        "visible_instances": 3,
    }


def test_live_instances_exclude_removed_ones(api: Api) -> None:
    instant_timing(api.control)
    api.action("delete", api.create())
    api.create()
    stats = api.control.stats()
    assert (stats["live_instances"], stats["visible_instances"]) == (1, 1)
    assert stats["instances_by_status"] == {"removed": 1, "running": 1}


def test_instance_ledger(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create(name="novitai-ledger", billingMode="spot", clusterId="us-ca-6")
    api.action("delete", iid)
    [view] = api.control.instances()
    assert view == api.control.instance(iid)
    history = view.pop("status_history")
    assert [e["status"] for e in history] == [
        "toCreate", "creating", "pulling", "running", "toRemove", "removing", "removed",
    ]  # fmt: skip
    assert view == {
        "id": iid,
        "name": "novitai-ledger",
        "clusterId": "us-ca-6",
        "productId": "4090.16c62g.sim",
        "billingMode": "spot",
        "imageUrl": "ghcr.io/example/pytorch-lab:2.4",
        "command": "",
        "entrypoint": "",
        "minCudaVersion": "",
        "networkStorages": [],
        "status": "removed",
        "spotStatus": "running",
        "created_at": history[0]["at"],
        "app_ready_at": history[3]["at"],
        "removed_at": history[-1]["at"],
        "visible": False,
        "vanished": False,
        "billed_seconds": view["billed_seconds"],
    }
    assert 0 <= view["billed_seconds"] <= history[4]["at"] - history[2]["at"] + 0.001
    with pytest.raises(SandboxControlError) as missing:
        api.control.instance("nope")
    assert missing.value.status == 404


def test_calls_since(api: Api) -> None:
    api.get("/clusters")
    middle = time.time()
    api.get("/products", clusterId="us-tx-2")
    api.post("/gpu/instance/stop", {"instanceId": "x"})
    everything = api.control.calls()
    assert [(c["method"], c["path"], c["status"]) for c in everything] == [
        ("GET", "/clusters", 200),
        ("GET", "/products", 200),
        ("POST", "/gpu/instance/stop", 404),
    ]
    assert everything[0]["at"] < middle <= everything[1]["at"] <= everything[2]["at"]
    assert api.control.calls(since=middle) == everything[1:]
    assert api.control.calls(since=time.time() + 1) == []


def test_control_calls_and_app_calls_are_not_api_calls(api: Api) -> None:
    api.control.stats()
    http("GET", api.control.url + "/_app/none/80/", key=None)
    assert api.control.calls() == []
    assert api.control.stats()["calls"] == {}


def test_timing_changes_apply_to_new_plans(api: Api) -> None:
    timing = api.control.set_timing(pulling=60, toCreate=0, creating=0)
    assert (timing["pulling"], timing["to_create"]) == (60.0, 0.0)
    iid = api.create()
    assert api.instance(iid)["status"] == "pulling"
    instant_timing(api.control)
    assert api.instance(iid)["status"] == "pulling"  # its plan was made already
    with pytest.raises(SandboxControlError) as error:
        api.control.set_timing(boiling=1)
    assert error.value.status == 400
    with pytest.raises(SandboxControlError):
        api.control.set_timing(pulling=-1)


def test_reset_restores_the_start(api: Api) -> None:
    start_faults, start_timing = api.control.faults(), api.control.timing()
    instant_timing(api.control)
    api.control.set_faults(error_rate=0.5, capacity_errors={"*": -1})
    api.control.set_offer("us-tx-2", "3090.8c31g.sim", "high")
    api.get("/clusters")
    api.control.set_faults(error_rate=0, capacity_errors={})
    api.create()
    api.control.set_faults(error_rate=0.5)
    api.control.reset()
    assert api.control.faults() == start_faults
    assert api.control.timing() == start_timing
    assert api.control.instances() == []
    assert api.control.calls() == []
    assert api.control.stats() == {
        "calls": {},
        "app_calls": {},
        "instances_by_status": {},
        "creates_by_name": {},
        "live_instances": 0,
        "visible_instances": 0,
    }
    assert {
        o["inventoryState"]
        for o in api.control.offers()
        if o["productId"] == "3090.8c31g.sim" and o["clusterId"] == "us-tx-2"
    } == {"none"}


def test_ids_repeat_after_reset_with_the_same_seed(api: Api) -> None:
    first = [api.create() for _ in range(3)]
    api.control.reset()
    assert [api.create() for _ in range(3)] == first


def test_unknown_control_endpoint_is_404(sandbox: SandboxControl) -> None:
    answer = http("GET", sandbox.url + "/_sandbox/nope", key=None)
    assert (answer.status, answer.body) == (
        404,
        {"error": "no control endpoint GET /_sandbox/nope"},
    )
    bad = http("POST", sandbox.url + "/_sandbox/faults", [1], key=None)
    assert (bad.status, bad.body) == (400, {"error": "body must be a JSON object"})


def test_control_client_refuses_non_http_urls() -> None:
    with pytest.raises(ValueError):
        SandboxControl("file:///etc/passwd")


def test_fixture_points_novitai_settings_at_the_sandbox(novita_settings: SandboxControl) -> None:
    from django.conf import settings

    assert novita_settings.api_base == settings.NOVITA_API_BASE_URL
    assert settings.NOVITA_API_BASE_URL.endswith("/gpu-instance/openapi/v1")
    assert settings.NOVITA_API_KEY == novita_settings.api_key == "sandbox-key"
    assert settings.NOVITA_CORE_API_BASE_URL.endswith("/openapi/v1")
    assert novita_settings.core_api_base == settings.NOVITA_CORE_API_BASE_URL


def test_the_clock_moves_forward_freezes_and_never_goes_back(api: Api) -> None:
    instant_timing(api.control, pulling=60)
    iid = api.create()
    assert api.instance(iid)["status"] == "pulling"
    frozen = api.control.freeze_clock()
    assert frozen["frozen"] is True
    assert api.control.clock()["now"] == frozen["now"]
    moved = api.control.advance_clock(60)
    assert moved["now"] == frozen["now"] + 60
    assert api.instance(iid)["status"] == "running"  # its plan moved with the clock
    thawed = api.control.freeze_clock(False)
    assert thawed["frozen"] is False
    assert api.control.clock()["now"] >= moved["now"]
    for bad in ({"advance": -1}, {"advance": "1"}, {"freeze": "yes"}):
        answer = http("POST", api.control.url + "/_sandbox/clock", bad, key=None)
        assert answer.status == 400
    api.control.reset()
    assert api.control.clock()["offset"] == 0.0
