"""The v1 wire format (novita-api.md §1-§3, §5): routes, input validation, JSON shapes.

State lives in state.Sandbox; this module only translates between it and Novita's JSON. Every
handler takes the sandbox and a Request and returns a Reply or raises state.ApiError.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .catalog import (
    CLUSTERS,
    CLUSTERS_BY_ID,
    PRODUCTS,
    PRODUCTS_BY_ID,
    REGISTRY_AUTHS,
    REGISTRY_AUTHS_BY_ID,
    TEMPLATE_USER,
    TEMPLATES,
    TEMPLATES_BY_ID,
    Product,
    Template,
)
from .state import (
    RUNNING,
    ApiError,
    CreateSpec,
    Instance,
    Port,
    Sandbox,
    validation_error,
)

BILLING_MODES = ("onDemand", "monthly", "spot")
INVENTORY_RANK = {"none": 0, "low": 1, "normal": 2, "high": 3}
RESERVED_PORTS = frozenset({2222, 2223, 2224})
MAX_PORTS = 15
DEFAULT_LIST_PAGE_SIZE = 1000
DEFAULT_TEMPLATE_PAGE_SIZE = 20


@dataclass
class Request:
    method: str
    path: str  # below the API base, e.g. "/gpu/instances"
    query: dict[str, list[str]]
    body: bytes
    now: float

    @classmethod
    def parse_query(cls, raw: str) -> dict[str, list[str]]:
        return parse_qs(raw, keep_blank_values=True)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def int_arg(self, name: str, lo: int, hi: int | None = None) -> int | None:
        raw = self.arg(name)
        if raw is None or raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            raise validation_error(f"{name} must be an integer") from None
        if value < lo or (hi is not None and value > hi):
            bounds = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise validation_error(f"{name} must be in {bounds}")
        return value

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise validation_error("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise validation_error("request body must be a JSON object")
        return data


@dataclass
class Reply:
    payload: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    lose: str = ""  # "close": drop the connection unanswered; "delay": answer late
    delay_s: float = 0.0


def _fuzzy(needle: str, haystack: str) -> bool:
    def norm(text: str) -> str:
        return re.sub(r"[\s_-]+", "", text.lower())

    return norm(needle) in norm(haystack)


def _page(items: list[Any], page_size: int, page_num: int) -> list[Any]:
    """pageNum 0 and 1 are both the first page; N >= 1 is 1-based."""
    start = max(page_num - 1, 0) * page_size
    return items[start : start + page_size]


# --- catalog -----------------------------------------------------------------------------------


def clusters(sb: Sandbox, req: Request) -> Reply:
    data = []
    for cluster in CLUSTERS:
        gpu_types = [p.name for p in PRODUCTS if sb.offer(p, cluster.id) is not None]
        data.append(
            {
                "id": cluster.id,
                "name": cluster.name,
                "availableGpuType": gpu_types,
                "supportNetworkStorage": cluster.support_network_storage,
                "supportInstanceNetwork": cluster.support_instance_network,
            }
        )
    return Reply({"data": data})


def _product_wire(
    sb: Sandbox, product: Product, cluster_id: str | None, gpu_num: int
) -> dict[str, Any] | None:
    cluster_ids = [cluster_id] if cluster_id else [c.id for c in CLUSTERS]
    offers = [(cid, o) for cid in cluster_ids if (o := sb.offer(product, cid)) is not None]
    if not offers:
        return None
    available = any(o.available_deploy and o.available_gpus >= gpu_num for _, o in offers)
    inventory = max((o.inventory_state for _, o in offers), key=INVENTORY_RANK.__getitem__)
    return {
        "id": product.id,
        "name": product.name,
        "cpuPerGpu": product.cpu_per_gpu,
        "memoryPerGpu": product.memory_per_gpu,
        "diskPerGpu": product.disk_per_gpu,
        "availableDeploy": available,
        "minRootFS": product.min_rootfs,
        "maxRootFS": product.max_rootfs,
        "minLocalStorage": product.min_local_storage,
        "maxLocalStorage": product.max_local_storage,
        "regions": [CLUSTERS_BY_ID[cid].name for cid, _ in offers],
        "price": product.price,
        "monthlyPrice": [{"price": p, "month": m} for p, m in product.monthly_prices],
        "billingMethods": list(product.methods),
        "spotPrice": str(product.spot_price),
        "inventoryState": inventory,
    }


def products(sb: Sandbox, req: Request) -> Reply:
    cluster_id = req.arg("clusterId") or None
    gpu_num = req.int_arg("gpuNum", 0, 8) or 1
    name = req.arg("productName") or ""
    billing = req.arg("billingMethod") or ""
    if billing and billing not in BILLING_MODES:
        raise validation_error(f"billingMethod must be one of {', '.join(BILLING_MODES)}")
    min_cpu = req.int_arg("minCpuPerGpu", 0) or 0
    min_memory = req.int_arg("minMemoryPerGpu", 0) or 0
    min_rootfs = req.int_arg("minRootFSSize", 0) or 0
    data = []
    for product in PRODUCTS:
        if name and not _fuzzy(name, product.name):
            continue
        if billing and billing not in product.methods:
            continue
        if product.cpu_per_gpu < min_cpu or product.memory_per_gpu < min_memory:
            continue
        if product.max_rootfs < min_rootfs:
            continue
        wire = _product_wire(sb, product, cluster_id, gpu_num)
        if wire is not None:
            data.append(wire)
    return Reply({"data": data})


def _template_wire(template: Template) -> dict[str, Any]:
    ports = []
    if template.http_ports:
        ports.append({"type": "http", "ports": list(template.http_ports)})
    if template.tcp_ports:
        ports.append({"type": "tcp", "ports": list(template.tcp_ports)})
    volumes = (
        [{"type": "local", "size": template.volume_size, "mountPath": "/workspace"}]
        if template.volume_size
        else []
    )
    return {
        "Id": template.id,
        "user": TEMPLATE_USER,
        "name": template.name,
        "readme": template.readme,
        "logo": "",
        "type": "instance",
        "channel": template.channel,
        "image": template.image,
        "imageAuth": template.image_auth,
        "startCommand": template.start_command,
        "rootfsSize": template.rootfs_size,
        "volumes": volumes,
        "ports": ports,
        "envs": [{"key": k, "value": v} for k, v in template.envs],
        "tools": [
            {"name": n, "describe": d, "port": p, "type": "http"} for n, d, p in template.tools
        ],
        "createTime": str(template.create_time),
    }


def templates(sb: Sandbox, req: Request) -> Reply:
    page_size = req.int_arg("pageSize", 0) or DEFAULT_TEMPLATE_PAGE_SIZE
    page_num = req.int_arg("pageNum", 0) or 0
    name = req.arg("name") or ""
    kind = req.arg("type") or ""
    channels = {c for raw in req.query.get("channel", []) for c in raw.split(",") if c}
    selected = [
        t
        for t in TEMPLATES
        if (not name or _fuzzy(name, t.name))
        and (not kind or kind == "instance")
        and (not channels or t.channel in channels)
    ]
    return Reply(
        {
            "template": [_template_wire(t) for t in _page(selected, page_size, page_num)],
            "pageSize": page_size,
            "pageNum": page_num,
            "total": len(selected),
        }
    )


def template(sb: Sandbox, req: Request) -> Reply:
    template_id = req.arg("templateId")
    if not template_id:
        raise validation_error("templateId is required")
    found = TEMPLATES_BY_ID.get(template_id)
    if found is None:
        raise ApiError(400, "TEMPLATE_NOT_FOUND", "template not found")
    return Reply({"template": _template_wire(found)})


def repository_auths(sb: Sandbox, req: Request) -> Reply:
    return Reply(
        {
            "data": [
                {"id": a.id, "name": a.name, "username": a.username, "password": a.password}
                for a in REGISTRY_AUTHS
            ]
        }
    )


# --- create ------------------------------------------------------------------------------------


def _string(body: dict[str, Any], key: str, max_len: int, *, required: bool = False) -> str:
    value = body.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise validation_error(f"{key} must be a string")
    if required and not value:
        raise validation_error(f"{key} is required")
    if len(value) > max_len:
        raise validation_error(f"{key} must be at most {max_len} characters")
    return value


def _integer(body: dict[str, Any], key: str, *, default: int | None = None) -> int:
    value = body.get(key, default)
    if value is None:
        raise validation_error(f"{key} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise validation_error(f"{key} must be an integer")
    return value


def _port(raw_port: Any, raw_type: Any) -> Port:
    try:
        port = int(raw_port)
    except (TypeError, ValueError):
        raise validation_error(f"invalid port: {raw_port!r}") from None
    if not 1 <= port <= 65535 or port in RESERVED_PORTS:
        raise validation_error(f"port {port} is out of range or reserved")
    if raw_type not in ("http", "tcp"):
        raise validation_error(f"port type must be http or tcp, not {raw_type!r}")
    return Port(port, raw_type)


def _check_ports(ports: list[Port]) -> tuple[Port, ...]:
    if len(ports) > MAX_PORTS:
        raise validation_error(f"at most {MAX_PORTS} ports")
    if len({p.port for p in ports}) != len(ports):
        raise validation_error("duplicate port")
    return tuple(ports)


def parse_ports(raw: Any) -> tuple[Port, ...]:
    """Create's `ports`: a string like "8888/http, 22/tcp"."""
    if raw is None or raw == "":
        return ()
    if not isinstance(raw, str):
        raise validation_error('ports must be a string like "8888/http,22/tcp"')
    ports = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        number, sep, kind = item.partition("/")
        if not sep:
            raise validation_error(f"invalid port: {item!r} (expected <port>/<http|tcp>)")
        ports.append(_port(number.strip(), kind.strip()))
    return _check_ports(ports)


def _envs(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 100:
        raise validation_error("envs must be a list of at most 100 {key, value}")
    envs = []
    for item in raw:
        if not isinstance(item, dict):
            raise validation_error("envs items must be {key, value}")
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str) or not key or len(key) > 511:
            raise validation_error("env key must be a string of 1-511 characters")
        if not isinstance(value, str) or len(value) > 4095:
            raise validation_error("env value must be a string of at most 4095 characters")
        envs.append((key, value))
    return tuple(envs)


def _network_storages(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 30:
        raise validation_error("networkStorages must be a list of at most 30 {Id, mountPoint}")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("Id"), str) or not item["Id"]:
            raise validation_error("networkStorages items need an Id")
        mount = item.get("mountPoint") or "/network"
        if not isinstance(mount, str) or len(mount) > 4095:
            raise validation_error("networkStorages mountPoint must be a string")
        out.append((item["Id"], mount))
    return tuple(out)


def create_spec(body: dict[str, Any]) -> CreateSpec:
    """Validate a create body as Novita does (400 VALIDATOR_PARAM, UNSUPPORTED_BILLING_MODE)."""
    name = _string(body, "name", 255)
    product_id = _string(body, "productId", 255, required=True)
    product = PRODUCTS_BY_ID.get(product_id)
    if product is None:
        raise validation_error(f"productId {product_id} does not exist")
    gpu_num = _integer(body, "gpuNum")
    if not 1 <= gpu_num <= 8:
        raise validation_error("gpuNum must be in [1, 8]")
    rootfs = max(_integer(body, "rootfsSize"), 10)
    if rootfs > min(product.max_rootfs, 6144):
        raise validation_error(f"rootfsSize must be in [10, {product.max_rootfs}]")
    image_url = _string(body, "imageUrl", 500, required=True)
    _string(body, "imageAuth", 10239)
    image_auth_id = _string(body, "imageAuthId", 255)
    if image_auth_id and image_auth_id not in REGISTRY_AUTHS_BY_ID:
        raise validation_error(f"imageAuthId {image_auth_id} does not exist")
    ports = parse_ports(body.get("ports"))
    envs = _envs(body.get("envs"))
    command = _string(body, "command", 2047)
    entrypoint = _string(body, "entrypoint", 2047)
    cluster_id = _string(body, "clusterId", 255)
    if cluster_id and cluster_id not in CLUSTERS_BY_ID:
        raise validation_error(f"clusterId {cluster_id} does not exist")
    kind = body.get("kind")
    if kind != "gpu":
        raise validation_error('kind must be "gpu"')
    month = _integer(body, "month", default=0)
    if month < 0:
        raise validation_error("month must be >= 0")
    billing = body.get("billingMode") or "onDemand"
    if month > 0:
        billing = "monthly"
    if billing not in BILLING_MODES:
        raise validation_error(f"billingMode must be one of {', '.join(BILLING_MODES)}")
    if billing not in product.methods:
        raise ApiError(400, "UNSUPPORTED_BILLING_MODE", f"billing mode {billing} is not supported")
    if billing == "monthly" and month == 0:
        raise validation_error("month is required for monthly billing")
    return CreateSpec(
        name=name,
        product_id=product_id,
        gpu_num=gpu_num,
        rootfs_size=rootfs,
        image_url=image_url,
        image_auth_id=image_auth_id,
        ports=ports,
        envs=envs,
        command=command,
        entrypoint=entrypoint,
        cluster_id=cluster_id,
        billing_mode=billing,
        month=month,
        network_storages=_network_storages(body.get("networkStorages")),
    )


def create(sb: Sandbox, req: Request) -> Reply:
    spec = create_spec(req.json())
    with sb.lock:
        instance = sb.create_locked(spec, req.now)
        faults = sb.faults
        reply = Reply({"id": instance.id})
        if faults.lose_create_answers > 0:
            sb.faults = dataclasses.replace(
                faults, lose_create_answers=faults.lose_create_answers - 1
            )
            reply.lose = faults.lose_create_mode
            reply.delay_s = faults.lose_create_delay_s
    return reply


# --- instances ---------------------------------------------------------------------------------


def _endpoint(sb: Sandbox, instance: Instance, port: Port, running: bool) -> str:
    if not running:
        return ""
    if port.type == "http":
        return f"{sb.public_url}/_app/{instance.id}/{port.port}/"
    return sb.tcp_endpoint


def _port_mappings(sb: Sandbox, instance: Instance, running: bool) -> list[dict[str, Any]]:
    return [
        {"port": p.port, "endpoint": _endpoint(sb, instance, p, running), "type": p.type}
        for p in instance.ports
    ]


def _volume_mounts(instance: Instance, size_type: type) -> list[dict[str, Any]]:
    mounts = [
        {"type": "local", "size": size_type(instance.rootfs_size), "id": "", "mountPath": "/"}
    ]
    mounts += [
        {"type": "network", "size": size_type(100), "id": sid, "mountPath": mount}
        for sid, mount in instance.spec.network_storages
    ]
    return mounts


def _unix(ts: float | None) -> str:
    return str(int(ts)) if ts else "0"


def _common(sb: Sandbox, instance: Instance, now: float) -> tuple[dict[str, Any], bool]:
    segment = instance.segment_at(now)
    running = segment.status == RUNNING
    spec = instance.spec
    product = instance.product
    end_time = "-1"
    if spec.billing_mode == "monthly":
        end_time = str(int(instance.created_at + spec.month * 30 * 86400))
    reclaim_time = instance.spot_plan[-1][0] if instance.spot_plan else None
    wire = {
        "id": instance.id,
        "name": spec.name,
        "clusterId": instance.cluster_id,
        "clusterName": CLUSTERS_BY_ID[instance.cluster_id].name,
        "status": segment.status,
        "statusError": {"state": segment.error_state, "message": segment.error},
        "imageUrl": spec.image_url,
        "imageAuthId": spec.image_auth_id,
        "command": spec.command,
        "cpuNum": str(product.cpu_per_gpu * spec.gpu_num),
        "memory": str(product.memory_per_gpu * spec.gpu_num),
        "gpuNum": str(spec.gpu_num),
        "productId": product.id,
        "productName": product.name,
        "rootfsSize": instance.rootfs_size,
        "kind": spec.kind,
        "billingMode": spec.billing_mode,
        "endTime": end_time,
        "spotStatus": instance.spot_status_at(now),
        "spotReclaimTime": _unix(reclaim_time),
        "portMappings": _port_mappings(sb, instance, running),
        "envs": [{"key": k, "value": v} for k, v in spec.envs],
        "createdAt": _unix(instance.created_at),
    }
    return wire, running


def instance_summary(sb: Sandbox, instance: Instance, now: float) -> dict[str, Any]:
    """An item of GET /gpu/instances: a subset of the detail, volumeMounts sizes as strings."""
    wire, _ = _common(sb, instance, now)
    wire["volumeMounts"] = _volume_mounts(instance, str)
    if sb.faults.list_omits_endpoints:
        wire["portMappings"] = [
            {"port": m["port"], "type": m["type"]} for m in wire["portMappings"]
        ]
    return wire


def instance_detail(sb: Sandbox, instance: Instance, now: float) -> dict[str, Any]:
    wire, running = _common(sb, instance, now)
    host, _, ssh_port = sb.tcp_endpoint.partition(":")
    jupyter = next((p for p in instance.ports if p.port == 8888 and p.type == "http"), None)
    base = f"{sb.public_url}/_app/{instance.id}"
    wire.update(
        {
            "entrypoint": instance.spec.entrypoint,
            "network": {"id": "", "ip": ""},
            "volumeMounts": _volume_mounts(instance, int),
            "node": [{"maxRootfsSize": instance.product.max_rootfs}],
            "jobs": [],
            "connectComponentSSH": {
                "sshCommand": f"ssh -p {ssh_port} root@{host}",
                "password": instance.ssh_password,
                "isRunning": running,
            },
            "connectComponentWebTerminal": {
                "address": f"{base}/terminal/",
                "username": "root",
                "password": instance.ssh_password,
                "isRunning": running,
            },
            "connectComponentJupyter": {
                "port": jupyter.port if jupyter else 0,
                "address": _endpoint(sb, instance, jupyter, running) if jupyter else "",
                "isRunning": running and jupyter is not None,
            },
            "connectComponentLog": {
                "systemLogAddress": f"{base}/logs/system",
                "instanceLogAddress": f"{base}/logs/instance",
                "isRunning": running,
            },
            "freeStorageSize": 60,
            "keepDataDay": 7,
            "lastStartedAt": _unix(instance.last_start_of(RUNNING, now)),
            "lastStoppedAt": _unix(instance.last_start_of("exited", now)),
        }
    )
    return wire


def list_instances(sb: Sandbox, req: Request) -> Reply:
    page_size = req.int_arg("pageSize", 0) or DEFAULT_LIST_PAGE_SIZE
    page_num = req.int_arg("pageNum", 0) or 0
    name = req.arg("name") or ""
    product_name = req.arg("productName") or ""
    status = req.arg("status") or ""
    now = req.now
    with sb.lock:
        sb.purge_locked(now)
        lag = sb.faults.list_lag_s
        everything = list(reversed(sb.visible.values()))  # newest first
        if name or product_name or status or lag:
            selected = [
                i
                for i in everything
                if (not name or name.lower() in i.name.lower())
                and (not product_name or _fuzzy(product_name, i.product.name))
                and (not status or i.status_at(now) == status)
                and (not lag or i.created_at + lag <= now)
            ]
        else:
            selected = everything
        page = [instance_summary(sb, i, now) for i in _page(selected, page_size, page_num)]
    return Reply({"instances": page, "total": len(selected)})


def get_instance(sb: Sandbox, req: Request) -> Reply:
    instance_id = req.arg("instanceId")
    if not instance_id:
        raise validation_error("instanceId is required")
    with sb.lock:
        return Reply(instance_detail(sb, sb.get_locked(instance_id, req.now), req.now))


def _instance_id(body: dict[str, Any]) -> str:
    instance_id = body.get("instanceId")
    if not isinstance(instance_id, str) or not instance_id:
        raise validation_error("instanceId is required")
    return instance_id


def _action(name: str) -> Callable[[Sandbox, Request], Reply]:
    def handler(sb: Sandbox, req: Request) -> Reply:
        instance_id = _instance_id(req.json())
        with sb.lock:
            instance = sb.get_locked(instance_id, req.now)
            if name == "start":
                return Reply(
                    {"instanceId": instance_id, "state": sb.start_locked(instance, req.now)}
                )
            if name == "stop":
                return Reply(
                    {"instanceId": instance_id, "state": sb.stop_locked(instance, req.now)}
                )
            if name == "restart":
                sb.restart_locked(instance, req.now)
            elif name == "delete":
                sb.delete_locked(instance, req.now)
            else:
                sb.migrate_locked(instance, req.now)
        return Reply({})

    handler.__name__ = name
    return handler


def edit(sb: Sandbox, req: Request) -> Reply:
    body = req.json()
    instance_id = _instance_id(body)
    ports: tuple[Port, ...] | None = None
    if "ports" in body:
        raw = body["ports"]
        if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
            raise validation_error("ports must be a list of {port, type}")
        ports = _check_ports([_port(p.get("port"), p.get("type")) for p in raw])
    rootfs = None
    if "expandRootDisk" in body:
        rootfs = _integer(body, "expandRootDisk")
    with sb.lock:
        sb.edit_locked(sb.get_locked(instance_id, req.now), req.now, ports, rootfs)
    return Reply({})


ROUTES: dict[tuple[str, str], Callable[[Sandbox, Request], Reply]] = {
    ("GET", "/clusters"): clusters,
    ("GET", "/products"): products,
    ("GET", "/templates"): templates,
    ("GET", "/template"): template,
    ("GET", "/repository/auths"): repository_auths,
    ("POST", "/gpu/instance/create"): create,
    ("GET", "/gpu/instances"): list_instances,
    ("GET", "/gpu/instance"): get_instance,
    ("POST", "/gpu/instance/start"): _action("start"),
    ("POST", "/gpu/instance/stop"): _action("stop"),
    ("POST", "/gpu/instance/restart"): _action("restart"),
    ("POST", "/gpu/instance/delete"): _action("delete"),
    ("POST", "/gpu/instance/migrate"): _action("migrate"),
    ("POST", "/gpu/instance/edit"): edit,
}
