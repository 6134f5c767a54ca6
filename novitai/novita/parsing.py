"""Novita v1 JSON -> the dataclasses of types.py, tolerant of what Novita really sends.

novita-api.md §4.3: numbers arrive as strings ("16", "17000"), enums as "" , statuses outside
the documented list, endpoints missing or empty while an instance is not running, optional
fields absent, and extra fields everywhere. All of that parses. What cannot be read (a string
where a list belongs, "abc" for a price, a missing id) raises ShapeError, which names the
field and the expected type but never the value: a value may be a password.

The raw shapes read here are declared in raw.py (TypedDicts; tests/novita/test_raw_shapes.py
keeps the two alike). The ssh password is read into a Secret (types.py); the web-terminal
password is never read.
Money (bills, the balance) is read as exact Decimal: 1/10000 USD units become USD.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from novitai.novita.types import (
    Balance,
    Bill,
    Cluster,
    EnvVar,
    GpuCardMetrics,
    GpuMetrics,
    InstanceJob,
    Job,
    LogAddresses,
    MetricPoint,
    MonthlyPrice,
    NetworkStorage,
    NovitaInstance,
    PortMapping,
    PortSpec,
    Product,
    RegistryAuth,
    Secret,
    SshAccess,
    StatusError,
    Template,
    VolumeMount,
)

MONEY_DECIMALS = 4  # billing money is in 1/10000 USD


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


def to_decimal(value: object, where: str) -> Decimal | None:
    """An exact Decimal from an int, a float (its shortest repr: 0.05 -> 0.05) or a numeric
    string ("170", " 170.5 "); None for null or ""."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ShapeError(where, "number", value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float | str):
        try:
            number = Decimal(repr(value) if isinstance(value, float) else value.strip())
        except InvalidOperation:
            raise ShapeError(where, "number", value) from None
        if number.is_finite():
            return number
    raise ShapeError(where, "number", value)


def get_decimal(obj: Obj, key: str, where: str) -> Decimal:
    return to_decimal(obj.get(key), f"{where}.{key}") or Decimal(0)


def get_money(obj: Obj, key: str, where: str) -> Decimal:
    """Billing money: 1/10000 USD units, as Decimal USD (170 -> 0.0170), exactly."""
    return get_decimal(obj, key, where).scaleb(-MONEY_DECIMALS)


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
        available_gpu_number=_optional_int(obj, "availableGpuNumber", where),
        exited_local_storage_price=_optional_int(obj, "exitedLocalStoragePrice", where),
        cuda_version=get_str(obj, "cudaVersion", where),
    )


def _optional_int(obj: Obj, key: str, where: str) -> int | None:
    value = obj.get(key)
    return None if value is None or value == "" else to_int(value, f"{where}.{key}")


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
        # the list has createTime, get-template createdAt (novita-api.md §7.5)
        create_time=get_timestamp(obj, "createTime", where)
        or get_timestamp(obj, "createdAt", where),
        entrypoint=get_str(obj, "entrypoint", where),
        min_cuda_version=get_str(obj, "minCudaVersion", where),
    )


def parse_registry_auth(value: object, where: str = "registry_auth") -> RegistryAuth:
    obj = as_object(value, where)
    return RegistryAuth(
        id=required_str(obj, "id", where),
        name=get_str(obj, "name", where),
        username=get_str(obj, "username", where),
        password=get_str(obj, "password", where),
    )


def parse_instance(value: object, where: str = "instance") -> NovitaInstance:
    """Get-instance and list items alike (list items carry fewer fields)."""
    obj = as_object(value, where)
    status_error = as_object(obj.get("statusError") or {}, f"{where}.statusError")
    return NovitaInstance(
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
        entrypoint=get_str(obj, "entrypoint", where),
        volume_mounts=tuple(
            VolumeMount(
                type=get_str(item, "type", at),
                size=get_int(item, "size", at),  # an int on get, a string on list
                id=get_str(item, "id", at),
                mount_path=get_str(item, "mountPath", at),
            )
            for at, item in objects(obj, "volumeMounts", where)
        ),
        jobs=tuple(
            InstanceJob(id=get_str(item, "id", at), type=get_str(item, "type", at))
            for at, item in objects(obj, "jobs", where)
        ),
        ssh=_ssh(obj, where),
        logs=_logs(obj, where),
    )


def ssh_target(command: str) -> tuple[str, int, str]:
    """(host, port, user) of an ssh command line; ("", 0, "") when it is not one."""
    try:
        words = shlex.split(command)
    except ValueError:
        return "", 0, ""
    if not words or words[0] != "ssh":
        return "", 0, ""
    host, port, user = "", 22, ""
    rest = iter(words[1:])
    for word in rest:
        if word == "-p":
            text = next(rest, "")
            port = int(text) if text.isdigit() else 0
        elif word.startswith("-p") and word[2:].isdigit():
            port = int(word[2:])
        elif word in ("-o", "-i", "-l", "-J", "-F", "-L", "-R", "-D"):
            value = next(rest, "")
            if word == "-l":
                user = value
        elif not word.startswith("-") and not host:
            user_part, at, host_part = word.rpartition("@")
            host = host_part
            if at:
                user = user_part
    return (host, port, user) if host else ("", 0, "")


def _ssh(obj: Obj, where: str) -> SshAccess | None:
    """connectComponentSSH {sshCommand, password, isRunning}; an older flat sshCommand and
    sshPassword; explicit host, port, user(name) keys win over the command's."""
    raw = obj.get("connectComponentSSH")
    at = f"{where}.connectComponentSSH"
    if raw is None or raw == {}:
        if not obj.get("sshCommand"):
            return None
        component: Obj = {"sshCommand": obj.get("sshCommand"), "password": obj.get("sshPassword")}
        at = where
    else:
        component = as_object(raw, at)
    command = get_str(component, "sshCommand", at) or get_str(component, "command", at)
    host, port, user = ssh_target(command)
    return SshAccess(
        host=get_str(component, "host", at) or host,
        port=get_int(component, "port", at) or port,
        user=get_str(component, "user", at) or get_str(component, "username", at) or user,
        password=Secret(get_str(component, "password", at)),
        command=command,
        running=get_bool(component, "isRunning", at),
    )


def _logs(obj: Obj, where: str) -> LogAddresses | None:
    raw = obj.get("connectComponentLog")
    if raw is None:
        return None
    at = f"{where}.connectComponentLog"
    component = as_object(raw, at)
    return LogAddresses(
        system=get_str(component, "systemLogAddress", at),
        instance=get_str(component, "instanceLogAddress", at),
    )


# --- network storage and jobs ---------------------------------------------------------------------


def parse_network_storage(value: object, where: str = "storage") -> NetworkStorage:
    obj = as_object(value, where)
    return NetworkStorage(
        id=required_str(obj, "storageId", where),
        name=get_str(obj, "storageName", where),
        size_gb=get_int(obj, "storageSize", where),
        cluster_id=get_str(obj, "clusterId", where),
        cluster_name=get_str(obj, "clusterName", where),
        price=to_decimal(obj.get("price"), f"{where}.price"),
        status=get_str(obj, "status", where),
    )


def parse_job(value: object, where: str = "job") -> Job:
    obj = as_object(value, where)
    raw_state = obj.get("state")
    at = f"{where}.state"
    # {state, error, message}; a bare string is read as the state alone
    state: Obj = (
        {"state": raw_state} if isinstance(raw_state, str) else as_object(raw_state or {}, at)
    )
    return Job(
        id=required_str(obj, "Id", where) if obj.get("Id") else required_str(obj, "id", where),
        type=get_str(obj, "type", where),
        state=get_str(state, "state", at),
        instance_id=get_str(obj, "instanceId", where),
        error=get_str(state, "error", at),
        message=get_str(state, "message", at),
        log_address=get_str(obj, "logAddress", where),
        created_at=get_timestamp(obj, "createdAt", where),
    )


# --- the core surface: money and metrics ----------------------------------------------------------


def parse_bill(value: object, where: str = "bill") -> Bill:
    obj = as_object(value, where)
    precision = obj.get("pricePrecision")
    return Bill(
        owner_id=get_str(obj, "ownerID", where) or get_str(obj, "ownerId", where),
        product_name=get_str(obj, "productName", where),
        category=get_str(obj, "category", where),
        billing_method=get_str(obj, "billingMethod", where),
        start_time=get_timestamp(obj, "startTime", where),
        end_time=get_timestamp(obj, "endTime", where),
        quantity=get_decimal(obj, "billNum0", where),
        unit_price=get_decimal(obj, "discountPrice0", where),
        price_precision=None
        if precision is None or precision == ""
        else to_int(precision, f"{where}.pricePrecision"),
        amount_usd=get_money(obj, "amount", where),
        pay_amount_usd=get_money(obj, "payAmount", where),
        voucher_amount_usd=get_money(obj, "voucherAmount", where),
    )


def parse_balance(value: object, where: str = "balance") -> Balance:
    obj = as_object(value, where)
    return Balance(
        available_usd=get_money(obj, "availableBalance", where),
        cash_usd=get_money(obj, "cashBalance", where),
        credit_limit_usd=get_money(obj, "creditLimit", where),
        outstanding_invoices_usd=get_money(obj, "outstandingInvoices", where),
    )


def _points(obj: Obj, key: str, where: str) -> tuple[MetricPoint, ...]:
    """[{time, value}] (or timestamp / [time, value] pairs), numbers or numeric strings."""
    out = []
    for index, item in enumerate(as_list(obj.get(key), f"{where}.{key}")):
        at = f"{where}.{key}[{index}]"
        if isinstance(item, list) and len(item) == 2:
            raw_time, raw_value = item
        else:
            point = as_object(item, at)
            raw_time = point.get("time", point.get("timestamp"))
            raw_value = point.get("value")
        number = to_decimal(raw_value, f"{at}.value")
        if number is None:
            continue  # a gap in the series
        out.append(MetricPoint(time=to_int(raw_time, f"{at}.time"), value=float(number)))
    return tuple(out)


def parse_gpu_metrics(value: object, where: str = "metrics") -> GpuMetrics:
    obj = as_object(value, where)
    return GpuMetrics(
        instance_id=get_str(obj, "instanceId", where),
        interval=get_int(obj, "interval", where),
        cpu=_points(obj, "cpuUtilization", where),
        memory=_points(obj, "memoryUtilization", where),
        root_disk=_points(obj, "rootDiskUtilization", where),
        gpus=tuple(
            GpuCardMetrics(
                index=get_int(card, "index", at, default=position),
                utilization=_points(card, "gpuUtilization", at),
                memory_utilization=_points(card, "gpuMemoryUtilization", at),
            )
            for position, (at, card) in enumerate(objects(obj, "gpus", where))
        ),
    )
