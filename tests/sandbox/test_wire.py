"""The sandbox speaks the v1 wire format: the examples of novita-api.md §5, shape for shape."""

# The §5 examples below are copied verbatim, long lines included.
# ruff: noqa: E501

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.sandbox.helpers import VALID_CREATE, Api, instant_timing, pin
from tests.sandbox.shapes import assert_same_shape, shape_differences

# --- novita-api.md §5.1, verbatim -----------------------------------------------------------------

CLUSTERS = json.loads("""
{"data":[
 {"id":"us-tx-2","name":"US-TX-02 (Dallas)","availableGpuType":["RTX 4090 24GB","H100 SXM 80GB"],"supportNetworkStorage":true,"supportInstanceNetwork":true},
 {"id":"eu-nl-1","name":"EU-NL-01 (Amsterdam)","availableGpuType":["RTX 4090 24GB","L40S 48GB"],"supportNetworkStorage":true,"supportInstanceNetwork":false},
 {"id":"as-jp-3","name":"AS-JP-03 (Osaka)","availableGpuType":["A100 SXM 80GB"],"supportNetworkStorage":false,"supportInstanceNetwork":false}
]}""")

PRODUCTS = json.loads("""
{"data":[
 {"id":"4090.16c62g.sim","name":"RTX 4090 24GB","cpuPerGpu":16,"memoryPerGpu":62,"diskPerGpu":200,"availableDeploy":true,
  "minRootFS":10,"maxRootFS":1000,"minLocalStorage":0,"maxLocalStorage":200,
  "regions":["US-TX-02 (Dallas)","EU-NL-01 (Amsterdam)"],"price":34000,
  "monthlyPrice":[{"price":21500000,"month":1},{"price":61000000,"month":3}],
  "billingMethods":["onDemand","monthly","spot"],"spotPrice":"17000","inventoryState":"high"},
 {"id":"h100.24c240g.sim","name":"H100 SXM 80GB","cpuPerGpu":24,"memoryPerGpu":240,"diskPerGpu":400,"availableDeploy":false,
  "minRootFS":10,"maxRootFS":2000,"minLocalStorage":0,"maxLocalStorage":800,
  "regions":["US-TX-02 (Dallas)"],"price":239000,"monthlyPrice":[],
  "billingMethods":["onDemand","spot"],"spotPrice":"129000","inventoryState":"none"}
]}""")

TEMPLATES = json.loads(r"""
{"template":[{"Id":"40117","user":"5512093348812290","name":"pytorch-jupyter","readme":"# PyTorch\nJupyter on 8888","logo":"",
  "type":"instance","channel":"private","image":"ghcr.io/example/pytorch-lab:2.4","imageAuth":"k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
  "startCommand":"","rootfsSize":40,"volumes":[{"type":"local","size":30,"mountPath":"/workspace"}],
  "ports":[{"type":"http","ports":[8888,7860]},{"type":"tcp","ports":[22]}],
  "envs":[{"key":"JUPYTER_TOKEN","value":"demo-token"}],
  "tools":[{"name":"Jupyter","describe":"JupyterLab","port":8888,"type":"http"}],"createTime":"1754032100"}],
 "pageSize":2,"pageNum":0,"total":1}""")

INSTANCE = json.loads("""
{"id":"9c41e07ab25d6f13","name":"sim-dev-1","clusterId":"us-tx-2","clusterName":"US-TX-02 (Dallas)","status":"running",
 "statusError":{"state":"","message":""},"imageUrl":"ghcr.io/example/pytorch-lab:2.4","imageAuthId":"k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
 "command":"","entrypoint":"","cpuNum":"16","memory":"62","gpuNum":"1","productId":"4090.16c62g.sim","productName":"RTX 4090 24GB",
 "rootfsSize":60,"kind":"gpu","billingMode":"spot","endTime":"-1","spotStatus":"running","spotReclaimTime":"0",
 "network":{"id":"","ip":""},
 "portMappings":[
  {"port":8888,"endpoint":"https://9c41e07ab25d6f13-8888.us-tx-2.gpu-instance.novita.ai","type":"http"},
  {"port":7860,"endpoint":"https://9c41e07ab25d6f13-7860.us-tx-2.gpu-instance.novita.ai","type":"http"},
  {"port":22,"endpoint":"proxy.us-tx-2.gpu-instance.novita.ai:31622","type":"tcp"}],
 "volumeMounts":[{"type":"local","size":60,"id":"","mountPath":"/"},{"type":"network","size":100,"id":"ns-7f3c21","mountPath":"/network"}],
 "envs":[{"key":"JUPYTER_TOKEN","value":"demo-token"}],"node":[{"maxRootfsSize":1000}],"jobs":[],
 "connectComponentSSH":{"sshCommand":"ssh -p 31622 root@proxy.us-tx-2.gpu-instance.novita.ai","password":"Sim-Pass-1234","isRunning":true},
 "connectComponentWebTerminal":{"address":"https://9c41e07ab25d6f13-terminal.us-tx-2.gpu-instance.novita.ai","username":"root","password":"Sim-Pass-1234","isRunning":true},
 "connectComponentJupyter":{"port":8888,"address":"https://9c41e07ab25d6f13-8888.us-tx-2.gpu-instance.novita.ai","isRunning":true},
 "connectComponentLog":{"systemLogAddress":"https://logs.sim.invalid/9c41e07ab25d6f13/system","instanceLogAddress":"https://logs.sim.invalid/9c41e07ab25d6f13/instance","isRunning":true},
 "freeStorageSize":60,"keepDataDay":7,"createdAt":"1754035200","lastStartedAt":"1754035262","lastStoppedAt":"0"}""")

INSTANCES = json.loads("""
{"instances":[{"id":"9c41e07ab25d6f13","name":"sim-dev-1","clusterId":"us-tx-2","clusterName":"US-TX-02 (Dallas)","status":"running",
  "imageUrl":"ghcr.io/example/pytorch-lab:2.4","imageAuthId":"k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8","command":"","cpuNum":"16","memory":"62","gpuNum":"1",
  "portMappings":[{"port":8888,"endpoint":"https://9c41e07ab25d6f13-8888.us-tx-2.gpu-instance.novita.ai","type":"http"}],
  "productId":"4090.16c62g.sim","productName":"RTX 4090 24GB","rootfsSize":60,
  "volumeMounts":[{"type":"network","size":"100","id":"ns-7f3c21","mountPath":"/network"}],
  "statusError":{"state":"","message":""},"envs":[],"kind":"gpu","billingMode":"spot","endTime":"-1","spotStatus":"running","spotReclaimTime":"0",
  "createdAt":"1754035200"}],
 "total":1}""")

# §7.1: products also carry a stopped instance's disk price (1/100000 USD per GB per day).
for _product in PRODUCTS["data"]:
    _product["exitedLocalStoragePrice"] = 500

AUTHS = json.loads("""
{"data":[{"id":"k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8","name":"ghcr.io","username":"sim-bot","password":"ghp_simulated"},
         {"id":"d9f1h3j5l7n9p1r3t5v7x9z1b3d5f7h9","name":"registry.example.com","username":"ci","password":"not-a-real-secret"}]}""")

ERROR = {"code": 400, "reason": "CONFLICT", "message": "invalid state change", "metadata": {}}

SPOT_CREATE = {
    **VALID_CREATE,
    "name": "sim-dev-1",
    "billingMode": "spot",
    "networkStorages": [{"Id": "ns-7f3c21", "mountPoint": "/network"}],
}


# --- the shape helper itself ----------------------------------------------------------------------


def test_shape_compare_sees_missing_and_extra_keys_and_type_changes() -> None:
    expected = {"a": "1", "b": [{"c": 1}], "d": True}
    assert shape_differences({"a": "2", "b": [{"c": 5}, {"c": 6}], "d": False}, expected) == []
    assert shape_differences({"a": 1, "b": [], "d": True}, expected) == [
        "$.a: int (1), expected str"
    ]
    assert shape_differences({"a": "1", "b": [{"c": "1"}], "e": 1}, expected) == [
        "$: missing keys ['d']",
        "$: extra keys ['e']",
        "$.b[0].c: str ('1'), expected int",
    ]
    assert shape_differences({"d": 1}, {"d": True}) == ["$.d: int (1), expected bool"]


# --- catalog --------------------------------------------------------------------------------------


def test_clusters_have_the_documented_shape(api: Api) -> None:
    answer = api.get("/clusters")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert_same_shape(answer.body, CLUSTERS)
    assert [c["id"] for c in answer.body["data"]] == [
        "us-tx-2",
        "us-ca-6",
        "eu-nl-1",
        "eu-de-1",
        "as-jp-3",
    ]
    dallas = answer.body["data"][0]
    assert dallas == {
        "id": "us-tx-2",
        "name": "US-TX-02 (Dallas)",
        "availableGpuType": [
            "RTX 4090 24GB",
            "RTX 3090 24GB",
            "RTX 4080 SUPER 16GB",
            "RTX 5090 32GB",
            "H100 SXM 80GB",
        ],
        "supportNetworkStorage": True,
        "supportInstanceNetwork": True,
    }


def test_products_have_the_documented_shape(api: Api) -> None:
    answer = api.get("/products", billingMethod="spot")
    assert answer.status == 200
    assert_same_shape(answer.body, PRODUCTS)
    ids = [p["id"] for p in answer.body["data"]]
    assert ids == [
        "4090.16c62g.sim",
        "3090.8c31g.sim",
        "4080s.12c46g.sim",
        "5090.16c92g.sim",
        "a6000.10c60g.sim",
        "a100.16c120g.sim",
        "h100.24c240g.sim",
    ]  # no L40S: it has no spot offer
    assert answer.body["data"][0] == {
        "id": "4090.16c62g.sim",
        "name": "RTX 4090 24GB",
        "cpuPerGpu": 16,
        "memoryPerGpu": 62,
        "diskPerGpu": 200,
        "availableDeploy": True,
        "minRootFS": 10,
        "maxRootFS": 1000,
        "minLocalStorage": 0,
        "maxLocalStorage": 200,
        "regions": ["US-TX-02 (Dallas)", "US-CA-06 (California)", "EU-NL-01 (Amsterdam)"],
        "price": 34000,
        "monthlyPrice": [{"price": 21500000, "month": 1}, {"price": 61000000, "month": 3}],
        "billingMethods": ["onDemand", "monthly", "spot"],
        "spotPrice": "17000",
        "inventoryState": "high",
        "exitedLocalStoragePrice": 500,
    }


def test_products_without_spot_say_spot_price_zero(api: Api) -> None:
    [l40s] = api.get("/products", productName="L40S").body["data"]
    assert l40s["spotPrice"] == "0"
    assert l40s["billingMethods"] == ["onDemand", "monthly"]


def test_products_are_answered_per_region(api: Api) -> None:
    dallas = {p["id"]: p for p in api.get("/products", clusterId="us-tx-2").body["data"]}
    assert sorted(dallas) == [
        "3090.8c31g.sim",
        "4080s.12c46g.sim",
        "4090.16c62g.sim",
        "5090.16c92g.sim",
        "h100.24c240g.sim",
    ]
    assert {p["regions"][0] for p in dallas.values()} == {"US-TX-02 (Dallas)"}
    assert (
        dallas["3090.8c31g.sim"]["availableDeploy"],
        dallas["3090.8c31g.sim"]["inventoryState"],
    ) == (
        False,
        "none",
    )
    amsterdam = {p["id"]: p for p in api.get("/products", clusterId="eu-nl-1").body["data"]}
    assert (
        amsterdam["3090.8c31g.sim"]["availableDeploy"],
        amsterdam["3090.8c31g.sim"]["inventoryState"],
    ) == (
        True,
        "normal",
    )
    [everywhere] = api.get("/products", productName="rtx3090").body["data"]
    assert everywhere["regions"] == [
        "US-TX-02 (Dallas)",
        "EU-NL-01 (Amsterdam)",
        "EU-DE-01 (Frankfurt)",
    ]
    assert (everywhere["availableDeploy"], everywhere["inventoryState"]) == (True, "high")
    assert api.get("/products", clusterId="nowhere-1").body == {"data": []}


def test_h100_is_never_deployable(api: Api) -> None:
    for cluster in ("", "us-tx-2", "as-jp-3"):
        [h100] = api.get("/products", clusterId=cluster, productName="H100").body["data"]
        assert (h100["availableDeploy"], h100["inventoryState"]) == (False, "none")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"gpuNum": 1, "clusterId": "eu-nl-1", "productName": "4090"}, True),
        ({"gpuNum": 2, "clusterId": "eu-nl-1", "productName": "4090"}, True),
        ({"gpuNum": 4, "clusterId": "eu-nl-1", "productName": "4090"}, False),  # low: 2 GPUs
        ({"gpuNum": 8, "clusterId": "us-tx-2", "productName": "4090"}, True),
    ],
)
def test_products_gpu_num_filter_reflects_free_gpus(
    api: Api, params: dict[str, Any], expected: bool
) -> None:
    [product] = api.get("/products", **params).body["data"]
    assert product["availableDeploy"] is expected


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({"productName": "rtx 40"}, ["4090.16c62g.sim", "4080s.12c46g.sim"]),
        (
            {"billingMethod": "monthly"},
            ["4090.16c62g.sim", "5090.16c92g.sim", "l40s.16c120g.sim", "a100.16c120g.sim"],
        ),
        ({"minMemoryPerGpu": 100, "minCpuPerGpu": 20}, ["h100.24c240g.sim"]),
        ({"minRootFSSize": 1500}, ["a100.16c120g.sim", "h100.24c240g.sim"]),
        (
            {"clusterId": "as-jp-3", "billingMethod": "onDemand"},
            ["a6000.10c60g.sim", "a100.16c120g.sim", "h100.24c240g.sim"],
        ),
    ],
)
def test_products_filters(api: Api, params: dict[str, Any], ids: list[str]) -> None:
    assert [p["id"] for p in api.get("/products", **params).body["data"]] == ids


@pytest.mark.parametrize(
    "params",
    [{"gpuNum": 9}, {"gpuNum": "x"}, {"billingMethod": "yearly"}, {"minCpuPerGpu": -1}],
)
def test_products_bad_filters_are_validator_param(api: Api, params: dict[str, Any]) -> None:
    answer = api.get("/products", **params)
    assert answer.status == 400
    assert answer.body["reason"] == "VALIDATOR_PARAM"


def test_templates_have_the_documented_shape(api: Api) -> None:
    answer = api.get("/templates", pageSize=2, pageNum=0)
    assert answer.status == 200
    assert_same_shape(answer.body, TEMPLATES)
    assert [t["Id"] for t in answer.body["template"]] == ["40117", "212"]
    assert (answer.body["pageSize"], answer.body["pageNum"], answer.body["total"]) == (2, 0, 4)
    private = answer.body["template"][0]
    assert private["imageAuth"] == "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8"
    assert private["ports"] == [
        {"type": "http", "ports": [8888, 7860]},
        {"type": "tcp", "ports": [22]},
    ]
    assert private["envs"] == [
        {"key": "JUPYTER_TOKEN", "value": "demo-token"},
        {"key": "PYTHONUNBUFFERED", "value": "1"},
    ]
    public = answer.body["template"][1]
    assert (public["name"], public["imageAuth"], public["ports"]) == (
        "comfyui",
        "",
        [{"type": "http", "ports": [8188]}],
    )


def test_templates_pages_treat_zero_and_one_as_the_first(api: Api) -> None:
    def ids(**params: Any) -> list[str]:
        return [t["Id"] for t in api.get("/templates", **params).body["template"]]

    assert ids(pageSize=3, pageNum=0) == ids(pageSize=3, pageNum=1) == ["40117", "212", "107672"]
    assert ids(pageSize=3, pageNum=2) == ["50211"]
    assert ids(pageSize=3, pageNum=3) == []
    assert ids(channel="official") == ["212", "50211"]
    assert ids(channel="private,community") == ["40117", "107672"]
    assert ids(name="VLLM") == ["107672"]
    assert api.get("/templates", name="vllm").body["total"] == 1


def _detail(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """novita-api.md §7.5: get-template is the list item with createdAt instead of createTime,
    plus entrypoint, minCudaVersion and recommendCards."""
    detail = {key: value for key, value in item.items() if key != "createTime"}
    return {**detail, "createdAt": item["createTime"], **extra}


TEMPLATE_DETAIL = _detail(
    TEMPLATES["template"][0],
    entrypoint="",
    minCudaVersion="12.4",
    recommendCards=[{"gpuSpecId": "4090.16c62g.sim", "cardNum": 1}],
)


def test_template_by_id(api: Api) -> None:
    one = api.get("/template", templateId="40117")
    assert one.status == 200
    assert_same_shape(one.body, {"template": TEMPLATE_DETAIL})
    listed = api.get("/templates", pageSize=1).body["template"][0]
    assert one.body["template"] == _detail(
        listed,
        entrypoint="",
        minCudaVersion="12.4",
        recommendCards=[{"gpuSpecId": "4090.16c62g.sim", "cardNum": 1}],
    )
    vllm = api.get("/template", templateId="107672").body["template"]
    assert (vllm["entrypoint"], vllm["minCudaVersion"], vllm["createdAt"]) == (
        "python3 -m vllm.entrypoints.openai.api_server",
        "12.1",
        "1754032100",
    )
    missing = api.get("/template", templateId="999")
    assert (missing.status, missing.body) == (
        400,
        {
            "code": 400,
            "reason": "TEMPLATE_NOT_FOUND",
            "message": "template not found",
            "metadata": {},
        },
    )
    assert api.get("/template").body["reason"] == "VALIDATOR_PARAM"


def test_repository_auths_return_passwords(api: Api) -> None:
    answer = api.get("/repository/auths")
    assert answer.status == 200
    assert answer.body == AUTHS


# --- instances ------------------------------------------------------------------------------------


def test_create_answers_only_an_id(api: Api) -> None:
    answer = api.post("/gpu/instance/create", SPOT_CREATE)
    assert answer.status == 200
    assert_same_shape(answer.body, {"id": "9c41e07ab25d6f13"})
    assert len(answer.body["id"]) == 16
    assert int(answer.body["id"], 16) >= 0


def test_running_instance_has_the_documented_shape(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create(**SPOT_CREATE)
    body = api.instance(iid)
    assert_same_shape(body, INSTANCE)
    url = api.control.url
    port = url.rsplit(":", 1)[1]
    assert body["status"] == "running"
    assert (body["cpuNum"], body["memory"], body["gpuNum"]) == ("16", "62", "1")
    assert body["portMappings"] == [
        {"port": 8888, "endpoint": f"{url}/_app/{iid}/8888/", "type": "http"},
        {"port": 7860, "endpoint": f"{url}/_app/{iid}/7860/", "type": "http"},
        {"port": 22, "endpoint": f"127.0.0.1:{port}", "type": "tcp"},
    ]
    assert body["volumeMounts"] == [
        {"type": "local", "size": 60, "id": "", "mountPath": "/"},
        {"type": "network", "size": 100, "id": "ns-7f3c21", "mountPath": "/network"},
    ]
    assert (body["spotStatus"], body["spotReclaimTime"], body["endTime"]) == ("running", "0", "-1")
    assert body["connectComponentSSH"]["sshCommand"] == f"ssh -p {port} root@127.0.0.1"
    assert body["connectComponentSSH"]["password"].startswith("Sbx-")
    assert body["connectComponentSSH"]["isRunning"] is True
    assert body["connectComponentJupyter"] == {
        "port": 8888,
        "address": f"{url}/_app/{iid}/8888/",
        "isRunning": True,
    }
    assert body["lastStartedAt"] != "0"
    assert body["lastStoppedAt"] == "0"
    assert int(body["createdAt"]) <= int(body["lastStartedAt"])


def test_pulling_instance_has_no_endpoints(api: Api) -> None:
    iid = pin(api, "pulling", **SPOT_CREATE)
    body = api.instance(iid)
    assert_same_shape(body, INSTANCE)
    assert [m["endpoint"] for m in body["portMappings"]] == ["", "", ""]
    assert {key: body[key]["isRunning"] for key in body if key.startswith("connectComponent")} == {
        "connectComponentSSH": False,
        "connectComponentWebTerminal": False,
        "connectComponentJupyter": False,
        "connectComponentLog": False,
    }
    assert body["lastStartedAt"] == "0"


def test_failed_pull_shows_status_error(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(pull_fail_image="pytorch-lab")
    iid = api.create(**SPOT_CREATE)
    body = api.instance(iid)
    assert_same_shape(body, INSTANCE)
    assert body["status"] == "exited"
    assert body["statusError"] == {
        "state": "pulling",
        "message": "failed to pull image: ghcr.io/example/pytorch-lab:2.4: manifest unknown",
    }


def test_list_items_have_the_documented_shape(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create(**SPOT_CREATE)
    answer = api.get("/gpu/instances", pageSize=10, pageNum=0, status="running")
    assert answer.status == 200
    assert_same_shape(answer.body, INSTANCES)
    [item] = answer.body["instances"]
    assert item["id"] == iid
    assert answer.body["total"] == 1
    assert item["volumeMounts"] == [
        {"type": "local", "size": "60", "id": "", "mountPath": "/"},
        {"type": "network", "size": "100", "id": "ns-7f3c21", "mountPath": "/network"},
    ]
    assert item["portMappings"] == api.instance(iid)["portMappings"]


def test_lifecycle_verbs_answer_as_documented(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    assert api.action("restart", iid).body == {}
    stop = api.action("stop", iid)
    assert (stop.status, stop.body) == (200, {"instanceId": iid, "state": "toStop"})
    start = api.action("start", iid)
    assert (start.status, start.body) == (200, {"instanceId": iid, "state": "toStart"})
    conflict = api.action("start", iid)
    assert (conflict.status, conflict.body) == (400, ERROR)
    assert api.action("delete", iid).body == {}


def test_every_error_is_the_kratos_envelope(api: Api) -> None:
    for answer in (
        api.get("/gpu/instance", instanceId="0000000000000000"),
        api.post("/gpu/instance/create", {}),
        api.get("/nope"),
    ):
        assert answer.headers["Content-Type"] == "application/json"
        assert_same_shape(answer.body, ERROR)
        assert answer.body["code"] == answer.status
