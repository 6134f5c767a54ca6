"""Novita v1 JSON -> the dataclasses of types.py, tolerant of what Novita really sends.

novita-api.md §4.3: numbers arrive as strings ("16", "17000"), enums as "" , statuses outside
the documented list, endpoints missing or empty while an instance is not running, optional
fields absent, and extra fields everywhere. All of that parses. What cannot be read (a string
where a list belongs, "abc" for a price, a missing id) raises ShapeError, which names the
field and the expected type but never the value: a value may be a password.

Secrets Novita sends (ssh and web-terminal passwords, `sshPassword`) are never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from novitai.novita.types import (
    Cluster,
    EnvVar,
    Instance,
    MonthlyPrice,
    PortMapping,
    PortSpec,
    Product,
    RegistryAuth,
    StatusError,
    Template,
)


class ShapeError(ValueError):
    """A payload that cannot be coerced into the expected type. Carries no payload values."""

    def __init__(self, where: str, expected: str, got: object) -> None:
        self.where = where
        super().__init__(f"{where}: expected {expected}, got {type(got).__name__}")


Obj = Mapping[str, Any]


def as_object(value: object, where: str) -> Obj:
    if not isinstance(value, Mapping):
        raise ShapeError(where, "object", value)
    return value


def as_list(value: object, where: str) -> list[Any]:
    """A list; None and {} (how the docs render an empty availableGpuType) are empty."""
    if value is None or value == {}:
        return []
    if not isinstance(value, list):
        raise ShapeError(where, "list", value)
    return value


def get_str(obj: Obj, key: str, where: str, default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ShapeError(f"{where}.{key}", "string", value)


def required_str(obj: Obj, key: str, where: str) -> str:
    value = get_str(obj, key, where)
    if not value:
        raise ShapeError(f"{where}.{key}", "non-empty string", obj.get(key))
    return value


def to_int(value: object, where: str, default: int = 0) -> int:
    """An exact integer from an int, an integral float, or a numeric string ("16", " 17000 ")."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ShapeError(where, "integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ShapeError(where, "integer", value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise ShapeError(where, "integer", value) from None
        if number.is_integer():
            return int(number)
    raise ShapeError(where, "integer", value)


def get_int(obj: Obj, key: str, where: str, default: int = 0) -> int:
    return to_int(obj.get(key), f"{where}.{key}", default)


def get_timestamp(obj: Obj, key: str, where: str) -> int | None:
    """Unix seconds, usually a string; "0", "" or absent mean "never"."""
    value = get_int(obj, key, where)
    return value or None


def get_bool(obj: Obj, key: str, where: str, default: bool = False) -> bool:
    value = obj.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ShapeError(f"{where}.{key}", "boolean", value)


def get_str_tuple(obj: Obj, key: str, where: str) -> tuple[str, ...]:
    items = as_list(obj.get(key), f"{where}.{key}")
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise ShapeError(f"{where}.{key}[{index}]", "string", item)
        out.append(item)
    return tuple(out)


def objects(obj: Obj, key: str, where: str) -> list[tuple[str, Obj]]:
    """The objects of a list field, each with its path for error messages."""
    items = as_list(obj.get(key), f"{where}.{key}")
    return [
        (f"{where}.{key}[{i}]", as_object(item, f"{where}.{key}[{i}]"))
        for i, item in enumerate(items)
    ]


# --- one parser per dataclass -----------------------------------------------------------------


def parse_cluster(value: object, where: str = "cluster") -> Cluster:
    obj = as_object(value, where)
    return Cluster(
        id=required_str(obj, "id", where),
        name=get_str(obj, "name", where),
        available_gpu_types=get_str_tuple(obj, "availableGpuType", where),
        support_network_storage=get_bool(obj, "supportNetworkStorage", where),
        support_instance_network=get_bool(obj, "supportInstanceNetwork", where),
    )


def parse_product(value: object, where: str = "product") -> Product:
    obj = as_object(value, where)
    available = obj.get("availableGpuNumber")
    return Product(
        id=required_str(obj, "id", where),
        name=get_str(obj, "name", where),
        cpu_per_gpu=get_int(obj, "cpuPerGpu", where),
        memory_per_gpu=get_int(obj, "memoryPerGpu", where),
        disk_per_gpu=get_int(obj, "diskPerGpu", where),
        available_deploy=get_bool(obj, "availableDeploy", where),
        min_rootfs=get_int(obj, "minRootFS", where),
        max_rootfs=get_int(obj, "maxRootFS", where),
        min_local_storage=get_int(obj, "minLocalStorage", where),
        max_local_storage=get_int(obj, "maxLocalStorage", where),
        regions=get_str_tuple(obj, "regions", where),
        price=get_int(obj, "price", where),
        spot_price=get_int(obj, "spotPrice", where),
        monthly_prices=tuple(
            MonthlyPrice(price=get_int(item, "price", at), month=get_int(item, "month", at))
            for at, item in objects(obj, "monthlyPrice", where)
        ),
        billing_methods=get_str_tuple(obj, "billingMethods", where),
        inventory_state=get_str(obj, "inventoryState", where),
        available_gpu_number=(
            None
            if available is None or available == ""
            else to_int(available, f"{where}.availableGpuNumber")
        ),
    )


def _template_ports(obj: Obj, where: str) -> tuple[PortSpec, ...]:
    """Template ports come grouped by protocol: [{"type": "http", "ports": [8888, 7860]}]."""
    ports = []
    for at, group in objects(obj, "ports", where):
        kind = get_str(group, "type", at) or "http"
        for index, port in enumerate(as_list(group.get("ports"), f"{at}.ports")):
            ports.append(PortSpec(port=to_int(port, f"{at}.ports[{index}]"), type=kind))
    return tuple(ports)


def _envs(obj: Obj, where: str) -> tuple[EnvVar, ...]:
    return tuple(
        EnvVar(key=required_str(item, "key", at), value=get_str(item, "value", at))
        for at, item in objects(obj, "envs", where)
    )


def parse_template(value: object, where: str = "template") -> Template:
    obj = as_object(value, where)
    return Template(
        id=required_str(obj, "Id", where) if obj.get("Id") else required_str(obj, "id", where),
        name=get_str(obj, "name", where),
        image=get_str(obj, "image", where),
        image_auth_id=get_str(obj, "imageAuth", where),
        start_command=get_str(obj, "startCommand", where),
        rootfs_size=get_int(obj, "rootfsSize", where),
        ports=_template_ports(obj, where),
        envs=_envs(obj, where),
        channel=get_str(obj, "channel", where),
        type=get_str(obj, "type", where) or "instance",
        create_time=get_timestamp(obj, "createTime", where),
    )


def parse_registry_auth(value: object, where: str = "registry_auth") -> RegistryAuth:
    obj = as_object(value, where)
    return RegistryAuth(
        id=required_str(obj, "id", where),
        name=get_str(obj, "name", where),
        username=get_str(obj, "username", where),
        password=get_str(obj, "password", where),
    )


def parse_instance(value: object, where: str = "instance") -> Instance:
    """Get-instance and list items alike (list items carry fewer fields)."""
    obj = as_object(value, where)
    status_error = as_object(obj.get("statusError") or {}, f"{where}.statusError")
    return Instance(
        id=required_str(obj, "id", where),
        name=get_str(obj, "name", where),
        status=get_str(obj, "status", where),
        cluster_id=get_str(obj, "clusterId", where),
        cluster_name=get_str(obj, "clusterName", where),
        status_error=StatusError(
            state=get_str(status_error, "state", f"{where}.statusError"),
            message=get_str(status_error, "message", f"{where}.statusError"),
        ),
        product_id=get_str(obj, "productId", where),
        product_name=get_str(obj, "productName", where),
        gpu_num=get_int(obj, "gpuNum", where),
        cpu_num=get_int(obj, "cpuNum", where),
        memory=get_int(obj, "memory", where),
        rootfs_size=get_int(obj, "rootfsSize", where),
        image_url=get_str(obj, "imageUrl", where),
        billing_mode=get_str(obj, "billingMode", where),
        spot_status=get_str(obj, "spotStatus", where),
        spot_reclaim_time=get_int(obj, "spotReclaimTime", where),
        port_mappings=tuple(
            PortMapping(
                port=get_int(item, "port", at),
                endpoint=get_str(item, "endpoint", at),
                type=get_str(item, "type", at),
            )
            for at, item in objects(obj, "portMappings", where)
        ),
        created_at=get_timestamp(obj, "createdAt", where),
        last_started_at=get_timestamp(obj, "lastStartedAt", where),
        last_stopped_at=get_timestamp(obj, "lastStoppedAt", where),
    )
