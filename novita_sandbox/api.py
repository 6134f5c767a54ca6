"""The wire format (novita-api.md §1-§3, §5, §7): routes, input validation, JSON shapes.

ROUTES are the GPU-instance surface (/gpu-instance/openapi/v1), CORE_ROUTES the core surface
(/openapi/v1: billing, GPU metrics). State lives in state.Sandbox; this module only translates
between it and Novita's JSON, through the fidelity switches (config.Fidelity). Every handler
takes the sandbox and a Request and returns a Reply or raises state.ApiError.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from . import billing
from .catalog import (
    CLUSTERS,
    CLUSTERS_BY_ID,
    CLUSTERS_BY_NUMERIC_ID,
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
    JOB_RUNNING,
    JOB_STATES,
    JOB_TYPES,
    RUNNING,
    ApiError,
    CreateSpec,
    Job,
    NetworkStorage,
    Port,
    Sandbox,
    SandboxInstance,
    validation_error,
)

BILLING_MODES = ("onDemand", "monthly", "spot")
INVENTORY_RANK = {"none": 0, "low": 1, "normal": 2, "high": 3}
RESERVED_PORTS = frozenset({2222, 2223, 2224})
MAX_PORTS = 15
DEFAULT_LIST_PAGE_SIZE = 1000
DEFAULT_TEMPLATE_PAGE_SIZE = 20
DEFAULT_STORAGE_PAGE_SIZE = 20
DEFAULT_JOB_PAGE_SIZE = 20
CUDA_VERSION = re.compile(r"^\d{1,2}(\.\d{1,2})?$")
METRICS_INTERVALS = (15, 3600)  # seconds, inclusive
METRICS_MAX_POINTS = 1440


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

    def required_int_arg(self, name: str, lo: int, hi: int | None = None) -> int:
        value = self.int_arg(name, lo, hi)
        if value is None:
            raise validation_error(f"{name} is required")
        return value

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


# --- clusters as the fidelity switch shows them -------------------------------------------------


def wire_cluster(sb: Sandbox, cluster_id: str) -> tuple[str, str]:
    """(id, name) of a cluster on the wire: "us-tx-2"/"US-TX-02 (Dallas)" or "1"/"US-01"."""
    cluster = CLUSTERS_BY_ID[cluster_id]
    if sb.fidelity.cluster_ids == "numeric":
        return cluster.numeric_id, cluster.numeric_name
    return cluster.id, cluster.name


def cluster_from_wire(sb: Sandbox, value: str) -> str | None:
    """The sandbox's cluster id for a wire id (only the current form is accepted)."""
    if sb.fidelity.cluster_ids == "numeric":
        cluster = CLUSTERS_BY_NUMERIC_ID.get(value)
        return cluster.id if cluster is not None else None
    return value if value in CLUSTERS_BY_ID else None


# --- catalog -----------------------------------------------------------------------------------


def clusters(sb: Sandbox, req: Request) -> Reply:
    data = []
    for cluster in CLUSTERS:
        gpu_types = [p.name for p in PRODUCTS if sb.offer(p, cluster.id) is not None]
        wire_id, wire_name = wire_cluster(sb, cluster.id)
        data.append(
            {
                "id": wire_id,
                "name": wire_name,
                "availableGpuType": gpu_types,
                "supportNetworkStorage": cluster.support_network_storage,
                "supportInstanceNetwork": cluster.support_instance_network,
            }
        )
    return Reply({"data": data})


def _product_wire(
    sb: Sandbox, product: Product, cluster_id: str | None, gpu_num: int, mode: str, now: float
) -> dict[str, Any] | None:
    """The product in one cluster, or across all; availability for billing mode `mode`."""
    cluster_ids = [cluster_id] if cluster_id else [c.id for c in CLUSTERS]
    offers = [(cid, o) for cid in cluster_ids if (o := sb.offer(product, cid)) is not None]
    if not offers:
        return None
    available = any(sb.deployable(product, cid, mode, gpu_num) for cid, _ in offers)
    inventory = max(
        (
            o.inventory_state if sb.capacity_on(product.id, cid, mode) else "none"
            for cid, o in offers
        ),
        key=INVENTORY_RANK.__getitem__,
    )
    prices = sb.prices(product.id, now)
    regions = [] if sb.fidelity.product_regions == "empty" else offers
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
        "regions": [wire_cluster(sb, cid)[1] for cid, _ in regions],
        "price": prices.price,
        "monthlyPrice": [{"price": p, "month": m} for p, m in product.monthly_prices],
        "billingMethods": list(product.methods),
        "spotPrice": str(prices.spot_price),
        "inventoryState": inventory,
        "exitedLocalStoragePrice": prices.exited_local_storage_price,
    }


def products(sb: Sandbox, req: Request) -> Reply:
    wire_id = req.arg("clusterId") or None
    gpu_num = req.int_arg("gpuNum", 0, 8) or 1
    name = req.arg("productName") or ""
    billing = req.arg("billingMethod") or ""
    if billing and billing not in BILLING_MODES:
        raise validation_error(f"billingMethod must be one of {', '.join(BILLING_MODES)}")
    min_cpu = req.int_arg("minCpuPerGpu", 0) or 0
    min_memory = req.int_arg("minMemoryPerGpu", 0) or 0
    min_rootfs = req.int_arg("minRootFSSize", 0) or 0
    cluster_id = cluster_from_wire(sb, wire_id) if wire_id else None
    if wire_id and cluster_id is None:
        return Reply({"data": []})  # an unknown cluster offers nothing
    # Availability is per billing mode; Novita's default mode is onDemand.
    mode = billing or "onDemand"
    data = []
    with sb.lock:
        for product in PRODUCTS:
            if name and not _fuzzy(name, product.name):
                continue
            if billing and billing not in product.methods:
                continue
            if product.cpu_per_gpu < min_cpu or product.memory_per_gpu < min_memory:
                continue
            if product.max_rootfs < min_rootfs:
                continue
            wire = _product_wire(sb, product, cluster_id, gpu_num, mode, req.now)
            if wire is not None:
                data.append(wire)
    return Reply({"data": data})


def _template_wire(template: Template, *, detail: bool = False) -> dict[str, Any]:
    """A list item; the detail (GET /template) has createdAt instead of createTime, and
    entrypoint, minCudaVersion, recommendCards (novita-api.md §7.5)."""
    wire = _template_item(template)
    if detail:
        del wire["createTime"]
        wire.update(
            {
                "entrypoint": template.entrypoint,
                "minCudaVersion": template.min_cuda_version,
                "recommendCards": [
                    {"gpuSpecId": product_id, "cardNum": cards}
                    for product_id, cards in template.recommend_cards
                ],
                "createdAt": str(template.create_time),
            }
        )
    return wire


def _template_item(template: Template) -> dict[str, Any]:
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
    return Reply({"template": _template_wire(found, detail=True)})


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


def create_spec(sb: Sandbox, body: dict[str, Any]) -> CreateSpec:  # noqa: C901 - one check per field of Novita's create body
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
    wire_cluster_id = _string(body, "clusterId", 255)
    cluster_id = cluster_from_wire(sb, wire_cluster_id) if wire_cluster_id else ""
    if cluster_id is None:
        raise validation_error(f"clusterId {wire_cluster_id} does not exist")
    min_cuda = _string(body, "minCudaVersion", 16)
    if min_cuda and not CUDA_VERSION.match(min_cuda):
        raise validation_error('minCudaVersion must look like "12.4"')
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
        min_cuda_version=min_cuda,
    )


def create(sb: Sandbox, req: Request) -> Reply:
    spec = create_spec(sb, req.json())
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


def _endpoint(sb: Sandbox, instance: SandboxInstance, port: Port, running: bool) -> str:
    if not running:
        return ""
    if port.type == "http":
        return f"{sb.public_url}/_app/{instance.id}/{port.port}/"
    return sb.tcp_endpoint


def _port_mappings(sb: Sandbox, instance: SandboxInstance, running: bool) -> list[dict[str, Any]]:
    return [
        {"port": p.port, "endpoint": _endpoint(sb, instance, p, running), "type": p.type}
        for p in instance.ports
    ]


def _volume_mounts(sb: Sandbox, instance: SandboxInstance, size_type: type) -> list[dict[str, Any]]:
    mounts = [
        {"type": "local", "size": size_type(instance.rootfs_size), "id": "", "mountPath": "/"}
    ]
    mounts += [
        {
            "type": "network",
            "size": size_type(sb.storages[sid].size),
            "id": sid,
            "mountPath": mount,
        }
        for sid, mount in instance.spec.network_storages
    ]
    return mounts


def _unix(ts: float | None) -> str:
    return str(int(ts)) if ts else "0"


def _common(sb: Sandbox, instance: SandboxInstance, now: float) -> tuple[dict[str, Any], bool]:
    segment = instance.segment_at(now)
    running = segment.status == RUNNING
    spec = instance.spec
    product = instance.product
    end_time = "-1"
    if spec.billing_mode == "monthly":
        end_time = str(int(instance.created_at + spec.month * 30 * 86400))
    # When the reclaim begins: the end of the notice.
    reclaim_time = next((at for at, s in instance.spot_plan if s == "reclaiming"), None)
    cluster_id, cluster_name = wire_cluster(sb, instance.cluster_id)
    wire = {
        "id": instance.id,
        "name": spec.name,
        "clusterId": cluster_id,
        "clusterName": cluster_name,
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
    }
    if sb.fidelity.instance_timestamps:
        wire["createdAt"] = _unix(instance.created_at)
    return wire, running


def instance_summary(sb: Sandbox, instance: SandboxInstance, now: float) -> dict[str, Any]:
    """An item of GET /gpu/instances: a subset of the detail, volumeMounts sizes as strings."""
    wire, _ = _common(sb, instance, now)
    wire["volumeMounts"] = _volume_mounts(sb, instance, str)
    if sb.faults.list_omits_endpoints:
        wire["portMappings"] = [
            {"port": m["port"], "type": m["type"]} for m in wire["portMappings"]
        ]
    return wire


def instance_detail(sb: Sandbox, instance: SandboxInstance, now: float) -> dict[str, Any]:
    wire, running = _common(sb, instance, now)
    host, _, ssh_port = sb.tcp_endpoint.partition(":")
    jupyter = next((p for p in instance.ports if p.port == 8888 and p.type == "http"), None)
    base = f"{sb.public_url}/_app/{instance.id}"
    wire.update(
        {
            "entrypoint": instance.spec.entrypoint,
            "network": {"id": "", "ip": ""},
            "volumeMounts": _volume_mounts(sb, instance, int),
            "node": [{"maxRootfsSize": instance.product.max_rootfs}],
            "jobs": [
                {"id": job.id, "type": job.type}
                for job in sb.jobs.values()
                if job.instance_id == instance.id and job.state_at(now) == JOB_RUNNING
            ],
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
        }
    )
    if sb.fidelity.instance_timestamps:
        wire["lastStartedAt"] = _unix(instance.last_start_of(RUNNING, now))
        wire["lastStoppedAt"] = _unix(instance.last_start_of("exited", now))
    if not sb.fidelity.spot_status_on_get:
        del wire["spotStatus"], wire["spotReclaimTime"]
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


# --- network storage (novita-api.md §2.9, §7.3) -----------------------------------------------


def _storage_wire(sb: Sandbox, storage: NetworkStorage, now: float) -> dict[str, Any]:
    cluster_id, cluster_name = wire_cluster(sb, storage.cluster_id)
    price = billing.value_at(sb.storage_prices[storage.cluster_id], now)
    return {
        "storageId": storage.id,
        "storageName": storage.name,
        "storageSize": storage.size,
        "clusterId": cluster_id,
        "clusterName": cluster_name,
        "price": str(price),  # 1/100000 USD per GB per day
        "status": "available",
    }


def list_storages(sb: Sandbox, req: Request) -> Reply:
    page_size = req.int_arg("pageSize", 0) or DEFAULT_STORAGE_PAGE_SIZE
    page_no = req.int_arg("pageNo", 0) or 0
    name = req.arg("storageName") or ""
    storage_id = req.arg("storageId") or ""
    with sb.lock:
        selected = [
            s
            for s in sb.storages.values()
            if s.deleted_at is None
            and (not name or name.lower() in s.name.lower())
            and (not storage_id or s.id == storage_id)
        ]
        page = [_storage_wire(sb, s, req.now) for s in _page(selected, page_size, page_no)]
    return Reply({"data": page, "total": len(selected)})


def _storage_id(body: dict[str, Any]) -> str:
    return _string(body, "storageId", 255, required=True)


def _storage_size(body: dict[str, Any]) -> int | None:
    return _integer(body, "storageSize") if body.get("storageSize") is not None else None


def create_storage(sb: Sandbox, req: Request) -> Reply:
    body = req.json()
    wire_id = _string(body, "clusterId", 255, required=True)
    cluster_id = cluster_from_wire(sb, wire_id)
    if cluster_id is None:
        raise validation_error(f"clusterId {wire_id} does not exist")
    name = _string(body, "storageName", 255, required=True)
    size = _integer(body, "storageSize")
    with sb.lock:
        storage = sb.storage_create_locked(cluster_id, name, size, req.now)
    return Reply(storage.id)  # a bare JSON string, as Novita answers


def update_storage(sb: Sandbox, req: Request) -> Reply:
    body = req.json()
    storage_id = _storage_id(body)
    name = _string(body, "storageName", 255) if "storageName" in body else None
    size = _storage_size(body)
    with sb.lock:
        sb.storage_update_locked(sb.storage_locked(storage_id), req.now, name=name, size=size)
    return Reply({})


def delete_storage(sb: Sandbox, req: Request) -> Reply:
    storage_id = _storage_id(req.json())
    with sb.lock:
        sb.storage_delete_locked(sb.storage_locked(storage_id), req.now)
    return Reply({})


# --- jobs: save image (novita-api.md §2.7, §7.4) -------------------------------------------------


def _job_wire(sb: Sandbox, job: Job, now: float) -> dict[str, Any]:
    state = job.state_at(now)
    failed = state == "fail"
    return {
        "Id": job.id,
        "user": TEMPLATE_USER,
        "type": job.type,
        "state": {
            "state": state,
            "error": "PUSH_IMAGE_FAILED" if failed else "",
            "message": job.failure if failed else "",
        },
        "logAddress": f"{sb.public_url}/_app/{job.instance_id}/logs/jobs/{job.id}",
        "createdAt": _unix(job.created_at),
        "instanceId": job.instance_id,
    }


def save_image(sb: Sandbox, req: Request) -> Reply:
    body = req.json()
    instance_id = _instance_id(body)
    image = _string(body, "image", 500, required=True)
    auth_id = _string(body, "registryAuthId", 255)
    with sb.lock:
        job = sb.save_image_locked(sb.get_locked(instance_id, req.now), image, auth_id, req.now)
    return Reply({"jobId": job.id})


def list_jobs(sb: Sandbox, req: Request) -> Reply:
    page_size = req.int_arg("pageSize", 0) or DEFAULT_JOB_PAGE_SIZE
    page_num = req.int_arg("pageNum", 0) or 0
    job_id = req.arg("jobId") or ""
    state = req.arg("state") or ""
    kind = req.arg("type") or ""
    if state and state not in JOB_STATES:
        raise validation_error(f"state must be one of {', '.join(JOB_STATES)}")
    if kind and kind not in JOB_TYPES:
        raise validation_error(f"type must be one of {', '.join(JOB_TYPES)}")
    start = req.int_arg("startTime", 0)
    end = req.int_arg("endTime", 0)
    now = req.now
    with sb.lock:
        selected = [
            j
            for j in reversed(sb.jobs.values())  # newest first
            if (not job_id or j.id == job_id)
            and (not state or j.state_at(now) == state)
            and (not kind or j.type == kind)
            and (start is None or j.created_at >= start)
            and (end is None or j.created_at < end)
        ]
        page = [_job_wire(sb, j, now) for j in _page(selected, page_size, page_num)]
    return Reply({"jobs": page, "total": len(selected)})


def break_job(sb: Sandbox, req: Request) -> Reply:
    job_id = _string(req.json(), "jobId", 255, required=True)
    with sb.lock:
        sb.job_break_locked(sb.job_locked(job_id), req.now)
    return Reply({"jobId": job_id})


# --- the core surface: billing and GPU metrics (novita-api.md §7.2, §7.4) ------------------------


def _window(req: Request, max_seconds: int) -> tuple[int, int]:
    start = req.required_int_arg("startTime", 0)
    end = req.required_int_arg("endTime", 0)
    if end <= start:
        raise validation_error("endTime must be after startTime")
    if end - start > max_seconds:
        raise validation_error(f"the time window must be at most {max_seconds} seconds")
    return start, end


def bill_list(sb: Sandbox, req: Request) -> Reply:
    cycle = req.arg("cycleType") or ""
    if cycle not in billing.CYCLES:
        raise validation_error(f"cycleType must be one of {', '.join(billing.CYCLES)}")
    start, end = _window(req, billing.MAX_WINDOW_S)
    category = req.arg("productCategory") or ""
    product_name = req.arg("productName") or ""
    owner_id = req.arg("ownerId") or ""
    with sb.lock:
        cutoff = min(end, sb.bill_cutoff(req.now))
        usages = sb.usages_locked(cutoff, owner_id)
    # Use stops at the cutoff; rows are the cycle's periods within the asked window.
    rows = [
        row.wire()
        for row in billing.rows(usages, cycle, start, end)
        if (not category or row.category == category)
        and (not product_name or _fuzzy(product_name, row.product_name))
    ]
    return Reply({"data": rows})


def balance_detail(sb: Sandbox, req: Request) -> Reply:
    with sb.lock:
        return Reply(sb.balance_locked(req.now))


def _series(values: list[tuple[int, float]]) -> list[dict[str, Any]]:
    return [{"time": at, "value": round(value, 1)} for at, value in values]


def gpu_metrics(sb: Sandbox, req: Request) -> Reply:
    instance_id = req.arg("instanceId")
    if not instance_id:
        raise validation_error("instanceId is required")
    start, end = _window(req, 7 * billing.DAY)
    interval = req.int_arg("interval", *METRICS_INTERVALS) or 60
    if (end - start) // interval > METRICS_MAX_POINTS:
        raise validation_error(f"at most {METRICS_MAX_POINTS} points: widen the interval")
    with sb.lock:
        instance = sb.get_locked(instance_id, req.now)
        cards = instance.spec.gpu_num
        newest = min(end, req.now - sb.timing.metrics_lag)
        first = -(-start // interval) * interval  # points sit on multiples of the interval
        # A point exists where the instance ran (a stopped instance reports nothing).
        points = [
            (at, billing.value_at(instance.load_plan, at))
            for at in range(first, int(newest) + 1, interval)
            if instance.status_at(at) == RUNNING
        ]
    return Reply(
        {
            "instanceId": instance.id,
            "startTime": str(start),
            "endTime": str(end),
            "interval": interval,
            "cpuUtilization": _series([(at, load.cpu) for at, load in points]),
            "memoryUtilization": _series([(at, load.memory) for at, load in points]),
            "rootDiskUtilization": _series([(at, load.root_disk) for at, load in points]),
            "gpus": [
                {
                    "index": card,
                    "gpuUtilization": _series(
                        [(at, load.per_card(load.gpu, cards)[card]) for at, load in points]
                    ),
                    "gpuMemoryUtilization": _series(
                        [(at, load.per_card(load.gpu_memory, cards)[card]) for at, load in points]
                    ),
                }
                for card in range(cards)
            ],
        }
    )


CORE_ROUTES: dict[tuple[str, str], Callable[[Sandbox, Request], Reply]] = {
    ("GET", "/billing/bill/list"): bill_list,
    ("GET", "/billing/balance/detail"): balance_detail,
    ("GET", "/metrics/gpu/instance"): gpu_metrics,
}

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
    ("GET", "/networkstorages/list"): list_storages,
    ("POST", "/networkstorage/create"): create_storage,
    ("POST", "/networkstorage/update"): update_storage,
    ("POST", "/networkstorage/delete"): delete_storage,
    ("POST", "/job/save/image"): save_image,
    ("GET", "/jobs"): list_jobs,
    ("POST", "/job/break"): break_job,
}
