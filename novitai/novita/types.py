"""What the Novita API returns, as typed, immutable values.

Catalog prices are integers in 1/100000 USD, exactly as Novita sends them (35000 = $0.35 per
GPU-hour; per GB per day for storage). Billing money (bills, the balance) arrives in 1/10000 USD
and is kept as Decimal USD, converted exactly (`*_usd` fields). Statuses are kept as the strings
Novita sends, known or not (see NovitaInstanceStatus). Secrets Novita sends are Secret values.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

from novitai.logging import REDACTED

PRICE_UNITS_PER_USD = 100_000
MONEY_UNITS_PER_USD = 10_000
PRICE_PRECISION = 5  # decimal places of the catalog's price units


def price_to_usd(units: int) -> Decimal:
    """1/100000 USD integer units -> exact Decimal USD."""
    return Decimal(units) / PRICE_UNITS_PER_USD


class Secret:
    """A value Novita sends that must never be shown (an ssh password).

    repr and str say "[redacted]"; dataclasses.asdict and copy keep the Secret itself (so a dump of
    a NovitaInstance holds no password); it cannot be pickled or JSON-encoded, so it cannot slip
    into a cache, a task argument or a webhook body. `reveal()` is the one way to the value.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled")


class NovitaInstanceStatus:
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
    # A stopped instance's disk, 1/100000 USD per GB per day (None: Novita did not say).
    exited_local_storage_price: int | None = None
    # The nodes' CUDA version ("12.4") where the product says (Novita documents none): offers
    # older than a template's minCudaVersion are left out. "" = unknown, kept.
    cuda_version: str = ""

    def available_in(self, cluster_name: str) -> bool:
        """Offered in that cluster (by display name): `regions: []` means every cluster."""
        return not self.regions or cluster_name in self.regions

    @property
    def exited_local_storage_usd_per_gb_day(self) -> Decimal | None:
        price = self.exited_local_storage_price
        return None if price is None else price_to_usd(price)


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
    create_time: int | None = None  # createTime (list) or createdAt (get)
    entrypoint: str = ""  # get-template only: forward it to create
    min_cuda_version: str = ""  # get-template only, e.g. "12.4": forward it to create


@dataclass(frozen=True)
class RegistryAuth:
    id: str
    name: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class NetworkStorageMount:
    id: str  # a network storage in the instance's cluster
    mount_point: str = "/network"


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
    entrypoint: str = ""
    min_cuda_version: str = ""
    network_storages: tuple[NetworkStorageMount, ...] = ()


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
class VolumeMount:
    type: str  # "local" | "network"
    size: int  # GB
    id: str = ""  # the network storage's id
    mount_path: str = ""


@dataclass(frozen=True)
class InstanceJob:
    id: str
    type: str  # saveImage | instanceMigrate | …


@dataclass(frozen=True)
class SshAccess:
    """connectComponentSSH: where to ssh, read from its sshCommand ("ssh -p 31622 root@host")."""

    host: str
    port: int
    user: str
    password: Secret = field(repr=False)
    command: str = ""
    running: bool = False  # isRunning


@dataclass(frozen=True)
class LogAddresses:
    """connectComponentLog."""

    system: str = ""
    instance: str = ""


@dataclass(frozen=True)
class NovitaInstance:
    id: str
    name: str
    status: str  # raw v1 status; see NovitaInstanceStatus
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
    spot_status: str = ""  # documented on the list; a get may not carry it (then "")
    spot_reclaim_time: int = 0  # unix seconds of a notified reclaim; 0 = none
    port_mappings: tuple[PortMapping, ...] = ()
    # Not documented any more (novita-api.md §7.5): None when absent. Decide nothing on them.
    created_at: int | None = None
    last_started_at: int | None = None
    last_stopped_at: int | None = None
    entrypoint: str = ""
    volume_mounts: tuple[VolumeMount, ...] = ()
    jobs: tuple[InstanceJob, ...] = ()  # get-instance: the jobs running on it
    ssh: SshAccess | None = None  # get-instance only
    logs: LogAddresses | None = None  # get-instance only


# --- network storage, jobs ---------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkStorage:
    id: str  # storageId
    name: str
    size_gb: int
    cluster_id: str = ""
    cluster_name: str = ""
    # As sent: 1/100000 USD per GB per day in the sandbox; Novita's unit is undocumented.
    price: Decimal | None = None
    status: str = ""

    @property
    def price_usd_per_gb_day(self) -> Decimal | None:
        return None if self.price is None else self.price.scaleb(-PRICE_PRECISION)


class JobState:
    PULLING = "pulling"
    RUNNING = "running"
    FAIL = "fail"
    SUCCESS = "success"
    BREAK = "break"

    ACTIVE = frozenset({PULLING, RUNNING})
    DONE = frozenset({FAIL, SUCCESS, BREAK})


@dataclass(frozen=True)
class Job:
    id: str
    type: str  # saveImage | instanceMigrate | autoInstanceMigrate
    state: str  # see JobState; unknown values are kept
    instance_id: str = ""
    error: str = ""
    message: str = ""
    log_address: str = ""
    created_at: int | None = None


# --- money (the core surface) ------------------------------------------------------------------


@dataclass(frozen=True)
class Bill:
    """One row of GET /billing/bill/list: an owner's use of a product in one cycle period."""

    owner_id: str  # an instance id or a network storage id
    product_name: str
    category: str  # gpu | cloud_storage | …
    billing_method: str
    start_time: int | None
    end_time: int | None
    quantity: Decimal  # billNum0: card-hours, GB-days, …
    unit_price: Decimal  # discountPrice0, as sent: 1/10^price_precision USD per unit
    price_precision: int | None
    amount_usd: Decimal
    pay_amount_usd: Decimal
    voucher_amount_usd: Decimal

    @property
    def unit_price_usd(self) -> Decimal:
        """USD per unit; without a pricePrecision, the catalog's 5 decimals."""
        precision = PRICE_PRECISION if self.price_precision is None else self.price_precision
        return self.unit_price.scaleb(-precision)


@dataclass(frozen=True)
class Balance:
    available_usd: Decimal
    cash_usd: Decimal
    credit_limit_usd: Decimal
    outstanding_invoices_usd: Decimal


# --- GPU metrics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricPoint:
    time: int  # unix seconds
    value: float  # percent


@dataclass(frozen=True)
class GpuCardMetrics:
    index: int
    utilization: tuple[MetricPoint, ...] = ()
    memory_utilization: tuple[MetricPoint, ...] = ()


@dataclass(frozen=True)
class GpuMetrics:
    """One instance's series. Novita's newest point is about a minute old, and a stopped
    instance has none: no points is "no data", never "idle"."""

    instance_id: str
    interval: int
    cpu: tuple[MetricPoint, ...] = ()
    memory: tuple[MetricPoint, ...] = ()
    root_disk: tuple[MetricPoint, ...] = ()
    gpus: tuple[GpuCardMetrics, ...] = ()

    def peak_gpu_utilization(self, since: int = 0) -> float | None:
        """The highest GPU utilization of any card at or after `since`; None without data."""
        values = [p.value for card in self.gpus for p in card.utilization if p.time >= since]
        return max(values) if values else None
