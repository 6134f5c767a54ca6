"""Create (and friends) validate their input like Novita and answer 400 with the right reason."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.sandbox.helpers import VALID_CREATE, Api, http, instant_timing

MISSING = object()


@pytest.mark.parametrize(
    ("changes", "reason", "message"),
    [
        ({"productId": MISSING}, "VALIDATOR_PARAM", "productId is required"),
        ({"productId": "nope.sim"}, "VALIDATOR_PARAM", "productId nope.sim does not exist"),
        ({"gpuNum": MISSING}, "VALIDATOR_PARAM", "gpuNum is required"),
        ({"gpuNum": 0}, "VALIDATOR_PARAM", "gpuNum must be in [1, 8]"),
        ({"gpuNum": 9}, "VALIDATOR_PARAM", "gpuNum must be in [1, 8]"),
        ({"gpuNum": "1"}, "VALIDATOR_PARAM", "gpuNum must be an integer"),
        ({"gpuNum": True}, "VALIDATOR_PARAM", "gpuNum must be an integer"),
        ({"rootfsSize": MISSING}, "VALIDATOR_PARAM", "rootfsSize is required"),
        ({"rootfsSize": 1001}, "VALIDATOR_PARAM", "rootfsSize must be in [10, 1000]"),
        ({"rootfsSize": 60.5}, "VALIDATOR_PARAM", "rootfsSize must be an integer"),
        ({"imageUrl": MISSING}, "VALIDATOR_PARAM", "imageUrl is required"),
        ({"imageUrl": ""}, "VALIDATOR_PARAM", "imageUrl is required"),
        ({"imageUrl": "x" * 501}, "VALIDATOR_PARAM", "imageUrl must be at most 500 characters"),
        ({"imageAuthId": "nope"}, "VALIDATOR_PARAM", "imageAuthId nope does not exist"),
        ({"name": "n" * 256}, "VALIDATOR_PARAM", "name must be at most 255 characters"),
        ({"name": 5}, "VALIDATOR_PARAM", "name must be a string"),
        ({"ports": "8888"}, "VALIDATOR_PARAM", "invalid port: '8888' (expected <port>/<http|tcp>)"),
        ({"ports": "8888/udp"}, "VALIDATOR_PARAM", "port type must be http or tcp, not 'udp'"),
        ({"ports": "0/http"}, "VALIDATOR_PARAM", "port 0 is out of range or reserved"),
        ({"ports": "65536/tcp"}, "VALIDATOR_PARAM", "port 65536 is out of range or reserved"),
        ({"ports": "2222/tcp"}, "VALIDATOR_PARAM", "port 2222 is out of range or reserved"),
        ({"ports": "x/http"}, "VALIDATOR_PARAM", "invalid port: 'x'"),
        ({"ports": "80/http,80/tcp"}, "VALIDATOR_PARAM", "duplicate port"),
        (
            {"ports": ",".join(f"{8000 + i}/http" for i in range(16))},
            "VALIDATOR_PARAM",
            "at most 15 ports",
        ),
        (
            {"ports": [{"port": 80, "type": "http"}]},
            "VALIDATOR_PARAM",
            'ports must be a string like "8888/http,22/tcp"',
        ),
        (
            {"envs": {"A": "1"}},
            "VALIDATOR_PARAM",
            "envs must be a list of at most 100 {key, value}",
        ),
        (
            {"envs": [{"key": "", "value": "1"}]},
            "VALIDATOR_PARAM",
            "env key must be a string of 1-511 characters",
        ),
        (
            {"envs": [{"key": "A", "value": 1}]},
            "VALIDATOR_PARAM",
            "env value must be a string of at most 4095 characters",
        ),
        (
            {"envs": [{"key": f"K{i}", "value": ""} for i in range(101)]},
            "VALIDATOR_PARAM",
            "envs must be a list of at most 100 {key, value}",
        ),
        ({"clusterId": "mars-1"}, "VALIDATOR_PARAM", "clusterId mars-1 does not exist"),
        (
            {"clusterId": "as-jp-3"},
            "VALIDATOR_PARAM",
            "product 4090.16c62g.sim is not offered in cluster as-jp-3",
        ),
        ({"kind": MISSING}, "VALIDATOR_PARAM", 'kind must be "gpu"'),
        ({"kind": "cpu"}, "VALIDATOR_PARAM", 'kind must be "gpu"'),
        (
            {"billingMode": "yearly"},
            "VALIDATOR_PARAM",
            "billingMode must be one of onDemand, monthly, spot",
        ),
        ({"billingMode": "monthly"}, "VALIDATOR_PARAM", "month is required for monthly billing"),
        ({"month": -1}, "VALIDATOR_PARAM", "month must be >= 0"),
        (
            {"networkStorages": [{"mountPoint": "/x"}]},
            "VALIDATOR_PARAM",
            "networkStorages items need an Id",
        ),
        (
            {"productId": "l40s.16c120g.sim", "clusterId": "eu-nl-1", "billingMode": "spot"},
            "UNSUPPORTED_BILLING_MODE",
            "billing mode spot is not supported",
        ),
        (
            {"productId": "3090.8c31g.sim", "month": 1},
            "UNSUPPORTED_BILLING_MODE",
            "billing mode monthly is not supported",
        ),
        (
            {"productId": "3090.8c31g.sim", "rootfsSize": 501},
            "VALIDATOR_PARAM",
            "rootfsSize must be in [10, 500]",
        ),
        ({"productId": "3090.8c31g.sim"}, "INSUFFICIENT_RESOURCE", "insufficient resource"),
        ({"productId": "h100.24c240g.sim"}, "INSUFFICIENT_RESOURCE", "insufficient resource"),
        (
            {"productId": "h100.24c240g.sim", "clusterId": ""},
            "INSUFFICIENT_RESOURCE",
            "insufficient resource",
        ),
        ({"clusterId": "eu-nl-1", "gpuNum": 3}, "INSUFFICIENT_RESOURCE", "insufficient resource"),
    ],
)
def test_invalid_create_is_400(
    api: Api, changes: dict[str, Any], reason: str, message: str
) -> None:
    body = {k: v for k, v in {**VALID_CREATE, **changes}.items() if v is not MISSING}
    answer = api.post("/gpu/instance/create", body)
    assert (answer.status, answer.body) == (
        400,
        {"code": 400, "reason": reason, "message": message, "metadata": {}},
    )
    assert api.control.instances() == []
    assert api.control.stats()["creates_by_name"] == {}


@pytest.mark.parametrize("body", [b"{", b"[1]", b'"x"'])
def test_create_body_must_be_a_json_object(api: Api, body: bytes) -> None:
    request = urllib.request.Request(
        api.base + "/gpu/instance/create",
        data=body,
        method="POST",
        headers={"Authorization": "Bearer sandbox-key", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 400
    assert json.loads(error.value.read())["reason"] == "VALIDATOR_PARAM"


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"rootfsSize": 5}, "rootfsSize", 10),
        ({"rootfsSize": -3}, "rootfsSize", 10),
        (
            {"ports": " 8888/http , 22/tcp ,"},
            "portMappings",
            [
                {"port": 8888, "endpoint": "", "type": "http"},
                {"port": 22, "endpoint": "", "type": "tcp"},
            ],
        ),
        ({"ports": ""}, "portMappings", []),
        ({"billingMode": ""}, "billingMode", "onDemand"),
        ({"month": 3}, "billingMode", "monthly"),
        ({"name": MISSING}, "name", ""),
        ({"unknownKey": 1, "env": [{"key": "A"}]}, "name", "novitai-test-1"),
    ],
)
def test_create_coerces_like_novita(
    api: Api, changes: dict[str, Any], field: str, expected: Any
) -> None:
    api.control.set_timing(to_create=60)
    body = {k: v for k, v in {**VALID_CREATE, **changes}.items() if v is not MISSING}
    answer = api.post("/gpu/instance/create", body)
    assert answer.status == 200, answer
    assert api.instance(answer.body["id"])[field] == expected


def test_create_without_cluster_picks_a_deployable_region(api: Api) -> None:
    instant_timing(api.control)
    clusters = {
        api.instance(api.create(productId="3090.8c31g.sim", clusterId=""))["clusterId"]
        for _ in range(12)
    }
    assert clusters <= {"eu-nl-1", "eu-de-1"}  # never Dallas, where it is not deployable


@pytest.mark.parametrize(
    "path",
    [
        "/gpu/instance/start",
        "/gpu/instance/stop",
        "/gpu/instance/restart",
        "/gpu/instance/delete",
        "/gpu/instance/migrate",
        "/gpu/instance/edit",
    ],
)
@pytest.mark.parametrize("body", [{}, {"instanceId": ""}, {"instanceId": 5}])
def test_actions_need_an_instance_id(api: Api, path: str, body: dict[str, Any]) -> None:
    answer = api.post(path, body)
    assert (answer.status, answer.body) == (
        400,
        {
            "code": 400,
            "reason": "VALIDATOR_PARAM",
            "message": "instanceId is required",
            "metadata": {},
        },
    )


def test_get_instance_needs_an_id(api: Api) -> None:
    answer = api.get("/gpu/instance")
    assert (answer.status, answer.body["message"]) == (400, "instanceId is required")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ports": "80/http"}, "ports must be a list of {port, type}"),
        ({"ports": [{"port": 80, "type": "udp"}]}, "port type must be http or tcp, not 'udp'"),
        ({"expandRootDisk": 30}, "expandRootDisk cannot shrink the root disk"),
        ({"expandRootDisk": 5000}, "rootfsSize must be <= 1000"),
        ({"expandRootDisk": "100"}, "expandRootDisk must be an integer"),
    ],
)
def test_invalid_edit_is_400(api: Api, body: dict[str, Any], message: str) -> None:
    instant_timing(api.control)
    iid = api.create()
    answer = api.post("/gpu/instance/edit", {"instanceId": iid, **body})
    assert (answer.status, answer.body["reason"], answer.body["message"]) == (
        400,
        "VALIDATOR_PARAM",
        message,
    )
    assert api.instance(iid)["rootfsSize"] == 60


def test_edit_changes_ports_and_grows_the_disk(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    answer = api.post(
        "/gpu/instance/edit",
        {"instanceId": iid, "ports": [{"port": 9000, "type": "http"}], "expandRootDisk": 100},
    )
    assert (answer.status, answer.body) == (200, {})
    body = api.instance(iid)
    assert body["rootfsSize"] == 100
    assert body["portMappings"] == [
        {"port": 9000, "endpoint": f"{api.control.url}/_app/{iid}/9000/", "type": "http"}
    ]
    assert http("GET", body["portMappings"][0]["endpoint"]).status == 200
