"""Tolerant parsing of what Novita really sends (novita-api.md §4.3), without the network."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from novitai.novita.parsing import (
    ShapeError,
    parse_cluster,
    parse_instance,
    parse_product,
    parse_registry_auth,
    parse_template,
    to_int,
)
from novitai.novita.raw import RawInstance
from novitai.novita.types import (
    Cluster,
    EnvVar,
    MonthlyPrice,
    NovitaInstance,
    PortMapping,
    PortSpec,
    Product,
    Secret,
    SshAccess,
    StatusError,
    Template,
    VolumeMount,
)

RUNNING: RawInstance = {  # novita-api.md §5.1, get-instance while running
    "id": "9c41e07ab25d6f13",
    "name": "sim-dev-1",
    "clusterId": "us-tx-2",
    "clusterName": "US-TX-02 (Dallas)",
    "status": "running",
    "statusError": {"state": "", "message": ""},
    "imageUrl": "ghcr.io/example/pytorch-lab:2.4",
    "imageAuthId": "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
    "command": "",
    "entrypoint": "",
    "cpuNum": "16",
    "memory": "62",
    "gpuNum": "1",
    "productId": "4090.16c62g.sim",
    "productName": "RTX 4090 24GB",
    "rootfsSize": 60,
    "kind": "gpu",
    "billingMode": "spot",
    "endTime": "-1",
    "spotStatus": "running",
    "spotReclaimTime": "0",
    "network": {"id": "", "ip": ""},
    "portMappings": [
        {"port": 8888, "endpoint": "https://9c41e07ab25d6f13-8888.example", "type": "http"},
        {"port": 22, "endpoint": "proxy.us-tx-2.example:31622", "type": "tcp"},
    ],
    "volumeMounts": [{"type": "local", "size": 60, "id": "", "mountPath": "/"}],
    "envs": [{"key": "JUPYTER_TOKEN", "value": "demo-token"}],
    "node": [{"maxRootfsSize": 1000}],
    "jobs": [],
    "connectComponentSSH": {"sshCommand": "ssh -p 31622 root@x", "password": "Sim-Pass-1234"},
    "connectComponentWebTerminal": {"address": "https://t", "password": "Sim-Pass-1234"},
    "sshPassword": "Sim-Pass-1234",
    "freeStorageSize": 60,
    "keepDataDay": 7,
    "createdAt": "1754035200",
    "lastStartedAt": "1754035262",
    "lastStoppedAt": "0",
}


def test_a_running_instance_parses_exactly() -> None:
    assert parse_instance(RUNNING) == NovitaInstance(
        id="9c41e07ab25d6f13",
        name="sim-dev-1",
        status="running",
        cluster_id="us-tx-2",
        cluster_name="US-TX-02 (Dallas)",
        status_error=StatusError("", ""),
        product_id="4090.16c62g.sim",
        product_name="RTX 4090 24GB",
        gpu_num=1,
        cpu_num=16,
        memory=62,
        rootfs_size=60,
        image_url="ghcr.io/example/pytorch-lab:2.4",
        billing_mode="spot",
        spot_status="running",
        spot_reclaim_time=0,
        port_mappings=(
            PortMapping(8888, "https://9c41e07ab25d6f13-8888.example", "http"),
            PortMapping(22, "proxy.us-tx-2.example:31622", "tcp"),
        ),
        created_at=1754035200,
        last_started_at=1754035262,
        last_stopped_at=None,
        volume_mounts=(VolumeMount("local", 60, "", "/"),),
        ssh=SshAccess(
            host="x",
            port=31622,
            user="root",
            password=Secret("Sim-Pass-1234"),
            command="ssh -p 31622 root@x",
        ),
    )


def test_no_password_survives_parsing() -> None:
    instance = parse_instance(RUNNING)
    assert "Sim-Pass-1234" not in repr(instance)
    assert "Sim-Pass-1234" not in repr(dataclasses.asdict(instance))
    assert "Sim-Pass-1234" not in str(instance.ssh)
    assert instance.ssh is not None
    assert instance.ssh.password.reveal() == "Sim-Pass-1234"


def test_odd_values_are_coerced() -> None:
    instance = parse_instance(
        {
            "id": "a1",
            "status": "hibernating",  # not in the documented list: kept as is
            "billingMode": "",
            "spotStatus": "",
            "gpuNum": " 2 ",
            "cpuNum": 16.0,
            "memory": "62.0",
            "rootfsSize": "",
            "portMappings": [
                {"port": "8888", "type": "http"},  # no endpoint while pulling
                {"port": 22, "endpoint": "", "type": "tcp"},
                {"port": 7860, "endpoint": None, "type": "http"},
            ],
            "statusError": None,
            "createdAt": 1754035200,
            "brandNewField": {"whatever": [1, 2, 3]},
        }
    )
    assert (instance.status, instance.billing_mode, instance.spot_status) == ("hibernating", "", "")
    assert (instance.gpu_num, instance.cpu_num, instance.memory, instance.rootfs_size) == (
        2,
        16,
        62,
        0,
    )
    assert instance.port_mappings == (
        PortMapping(8888, "", "http"),
        PortMapping(22, "", "tcp"),
        PortMapping(7860, "", "http"),
    )
    assert instance.status_error == StatusError()
    assert instance.created_at == 1754035200


def test_a_list_item_with_only_an_id_parses_with_defaults() -> None:
    assert parse_instance({"id": "a1"}) == NovitaInstance(id="a1", name="", status="")


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"name": "x"}, "instance.id"),
        ({"id": ""}, "instance.id"),
        ({"id": "a1", "gpuNum": "two"}, "instance.gpuNum"),
        ({"id": "a1", "gpuNum": 1.5}, "instance.gpuNum"),
        ({"id": "a1", "gpuNum": True}, "instance.gpuNum"),
        ({"id": "a1", "portMappings": "8888/http"}, "instance.portMappings"),
        ({"id": "a1", "portMappings": [7]}, "instance.portMappings[0]"),
        ({"id": "a1", "portMappings": [{"port": "x"}]}, "instance.portMappings[0].port"),
        ({"id": "a1", "status": ["running"]}, "instance.status"),
        ({"id": "a1", "statusError": "boom"}, "instance.statusError"),
    ],
)
def test_what_cannot_be_coerced_raises_shape_error(payload: dict[str, Any], where: str) -> None:
    with pytest.raises(ShapeError) as caught:
        parse_instance(payload)
    assert caught.value.where == where
    assert str(caught.value).startswith(f"{where}: expected ")


def test_a_shape_error_never_quotes_the_value() -> None:
    with pytest.raises(ShapeError) as caught:
        parse_registry_auth({"id": "r1", "password": {"plain": "hunter2-canary"}})
    assert str(caught.value) == "registry_auth.password: expected string, got dict"


def test_not_an_object_raises_shape_error() -> None:
    with pytest.raises(ShapeError, match=r"^instance: expected object, got list$"):
        parse_instance(["a1"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), ("7", 7), (" 7 ", 7), ("-1", -1), ("7.0", 7), (7.0, 7), ("", 0), (None, 0)],
)
def test_to_int_accepts_exact_integers_in_any_dress(value: object, expected: int) -> None:
    assert to_int(value, "x") == expected


@pytest.mark.parametrize("value", ["7.5", 7.5, "abc", True, [7], {"v": 7}])
def test_to_int_refuses_what_is_not_an_exact_integer(value: object) -> None:
    with pytest.raises(ShapeError):
        to_int(value, "x")


def test_a_product_keeps_exact_integer_prices() -> None:
    product = parse_product(
        {
            "id": "4090.16c62g.sim",
            "name": "RTX 4090 24GB",
            "cpuPerGpu": 16,
            "memoryPerGpu": "62",
            "diskPerGpu": 200,
            "availableDeploy": True,
            "minRootFS": 10,
            "maxRootFS": 1000,
            "minLocalStorage": 0,
            "maxLocalStorage": 200,
            "regions": ["US-TX-02 (Dallas)"],
            "price": "34000",
            "monthlyPrice": [{"price": 21500000, "month": "1"}],
            "billingMethods": ["onDemand", "spot"],
            "spotPrice": "17000",
            "inventoryState": "high",
            "availableGpuNumber": "12",
            "somethingNew": 1,
        }
    )
    assert product == Product(
        id="4090.16c62g.sim",
        name="RTX 4090 24GB",
        cpu_per_gpu=16,
        memory_per_gpu=62,
        disk_per_gpu=200,
        available_deploy=True,
        min_rootfs=10,
        max_rootfs=1000,
        min_local_storage=0,
        max_local_storage=200,
        regions=("US-TX-02 (Dallas)",),
        price=34000,
        spot_price=17000,
        monthly_prices=(MonthlyPrice(price=21500000, month=1),),
        billing_methods=("onDemand", "spot"),
        inventory_state="high",
        available_gpu_number=12,
    )


def test_a_product_without_spot_or_inventory() -> None:
    product = parse_product(
        {"id": "l40s", "spotPrice": "", "inventoryState": "", "availableDeploy": "false"}
    )
    assert (product.spot_price, product.inventory_state, product.available_deploy) == (0, "", False)
    assert (product.regions, product.monthly_prices, product.available_gpu_number) == ((), (), None)


def test_a_cluster_whose_gpu_types_render_as_an_empty_object() -> None:
    # The docs' sample renders availableGpuType as {} although it is a list.
    assert parse_cluster({"id": "eu-nl-1", "name": "EU-NL-01", "availableGpuType": {}}) == Cluster(
        id="eu-nl-1", name="EU-NL-01"
    )


def test_a_template_flattens_its_port_groups() -> None:
    template = parse_template(
        {
            "Id": "40117",
            "name": "pytorch-jupyter",
            "type": "instance",
            "channel": "private",
            "image": "ghcr.io/example/pytorch-lab:2.4",
            "imageAuth": "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
            "startCommand": "",
            "rootfsSize": "40",
            "ports": [{"type": "http", "ports": [8888, "7860"]}, {"type": "tcp", "ports": [22]}],
            "envs": [{"key": "JUPYTER_TOKEN", "value": "demo-token"}],
            "createTime": "1754032100",
            "isCollected": False,
        }
    )
    assert template == Template(
        id="40117",
        name="pytorch-jupyter",
        image="ghcr.io/example/pytorch-lab:2.4",
        image_auth_id="k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
        start_command="",
        rootfs_size=40,
        ports=(PortSpec(8888, "http"), PortSpec(7860, "http"), PortSpec(22, "tcp")),
        envs=(EnvVar("JUPYTER_TOKEN", "demo-token"),),
        channel="private",
        type="instance",
        create_time=1754032100,
    )
    assert "demo-token" not in repr(template)
