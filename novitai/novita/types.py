"""What the Novita v1 API returns, as typed, immutable values.

Prices are integers in 1/100000 USD per GPU-hour, exactly as Novita sends them (35000 = $0.35/h).
Statuses are kept as the strings Novita sends, known or not (see InstanceStatus).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

PRICE_UNITS_PER_USD = 100_000


def price_to_usd(units: int) -> Decimal:
    """1/100000 USD integer units -> exact Decimal USD."""
    return Decimal(units) / PRICE_UNITS_PER_USD


class InstanceStatus:
    """v1 instance statuses (novita-api.md §3). Unknown values are kept as they come."""

    TO_CREATE = "toCreate"
    CREATING = "creating"
    PULLING = "pulling"
    RUNNING = "running"
    TO_START = "toStart"
    STARTING = "starting"
    TO_STOP = "toStop"
    STOPPING = "stopping"
    EXITED = "exited"
    TO_RESTART = "toRestart"
    RESTARTING = "restarting"
    TO_REMOVE = "toRemove"
    REMOVING = "removing"
    REMOVED = "removed"
    TO_RESET = "toReset"
    RESETTING = "resetting"
    MIGRATING = "migrating"
    FREEZING = "freezing"
    PENDING = "pending"

    BOOTING = frozenset(
        {
            TO_CREATE,
            CREATING,
            PULLING,
            TO_START,
            STARTING,
            TO_RESTART,
            RESTARTING,
            TO_RESET,
            RESETTING,
            MIGRATING,
            PENDING,
        }
    )
    STOPPING_STATES = frozenset({TO_STOP, STOPPING})
    REMOVING_STATES = frozenset({TO_REMOVE, REMOVING, REMOVED})


class BillingMethod:
    ON_DEMAND = "onDemand"
    MONTHLY = "monthly"
    SPOT = "spot"


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str  # display name, e.g. "US-TX-02 (Dallas)"
    available_gpu_types: tuple[str, ...] = ()
    support_network_storage: bool = False
    support_instance_network: bool = False


@dataclass(frozen=True)
class MonthlyPrice:
    price: int  # 1/100000 USD
    month: int


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    cpu_per_gpu: int
    memory_per_gpu: int  # GB
    disk_per_gpu: int  # GB
    available_deploy: bool
    min_rootfs: int
    max_rootfs: int
    min_local_storage: int
    max_local_storage: int
    regions: tuple[str, ...]  # cluster display names
    price: int  # on-demand, 1/100000 USD per GPU-hour
    spot_price: int  # 0 when there is no spot offer
    monthly_prices: tuple[MonthlyPrice, ...]
    billing_methods: tuple[str, ...]
    inventory_state: str  # none | low | normal | high | "" (unknown)
    available_gpu_number: int | None = None


@dataclass(frozen=True)
class PortSpec:
    port: int
    type: str  # "http" | "tcp"


@dataclass(frozen=True)
class EnvVar:
    key: str
    value: str = field(repr=False)  # may hold a token: never in repr, logs or exceptions


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    image: str
    image_auth_id: str  # registry-auth id, "" for public images
    start_command: str
    rootfs_size: int
    ports: tuple[PortSpec, ...]
    envs: tuple[EnvVar, ...]
    channel: str = ""
    type: str = "instance"
    create_time: int | None = None


@dataclass(frozen=True)
class RegistryAuth:
    id: str
    name: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class CreateInstanceRequest:
    name: str
    product_id: str
    gpu_num: int
    rootfs_size: int
    image_url: str
    cluster_id: str
    billing_mode: str = BillingMethod.ON_DEMAND  # onDemand | spot
    ports: tuple[PortSpec, ...] = ()
    envs: tuple[EnvVar, ...] = ()
    image_auth_id: str = ""
    command: str = ""
    kind: str = "gpu"


@dataclass(frozen=True)
class PortMapping:
    port: int
    endpoint: str  # "" while not running
    type: str  # "http" | "tcp"


@dataclass(frozen=True)
class StatusError:
    state: str = ""
    message: str = ""


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    status: str  # raw v1 status; see InstanceStatus
    cluster_id: str = ""
    cluster_name: str = ""
    status_error: StatusError = StatusError()
    product_id: str = ""
    product_name: str = ""
    gpu_num: int = 0
    cpu_num: int = 0
    memory: int = 0
    rootfs_size: int = 0
    image_url: str = ""
    billing_mode: str = ""  # may be "" (novita-api.md §2.6)
    spot_status: str = ""
    spot_reclaim_time: int = 0
    port_mappings: tuple[PortMapping, ...] = ()
    created_at: int | None = None
    last_started_at: int | None = None
    last_stopped_at: int | None = None
