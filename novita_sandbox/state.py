"""The simulated Novita: instances, their lifecycle on a clock, network storage, jobs, prices,
the balance, faults, and the call ledger.

Statuses are not advanced by threads. Each action (create, stop, start, restart, delete,
migrate, reclaim) writes a plan: a list of timestamped segments, the first starting now and each
later one when the previous status's dwell time has run out. The status at any moment is the
last segment that has begun. An action taken mid-plan drops the segments still in the future.
Jobs, prices, volume sizes and GPU load are timelines of the same kind, so that bills and metrics
can be read for any past moment.

"Now" is the sandbox's clock (Clock): the real clock unless the control API moved it forward or
froze it. The rate limit, `fail_next` expiry and the call log keep the real clock: they are about
the traffic, not about Novita's world.

One lock guards everything; callers hold `Sandbox.lock` while they read or change state, and do
nothing slow (sleeping, I/O, JSON encoding) while holding it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import heapq
import math
import random
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from . import billing
from .billing import CLOUD_STORAGE, DAY, GPU, HOUR, NETWORK_STORAGE_PRODUCT, Timeline, Usage
from .catalog import (
    CLUSTERS_BY_ID,
    NETWORK_STORAGE_MAX_GB,
    NETWORK_STORAGE_MIN_GB,
    NETWORK_STORAGE_PRICE,
    PRODUCTS,
    PRODUCTS_BY_ID,
    REGISTRY_AUTHS_BY_ID,
    SEED_STORAGES,
    Offer,
    Product,
)
from .config import FailRule, Faults, Fidelity, SandboxConfig, Timing, faults_activate

CALL_LOG_LIMIT = 200_000

RUNNING = "running"
EXITED = "exited"
REMOVED = "removed"
REMOVE_STATES = frozenset({"toRemove", "removing", REMOVED})
STOPPABLE = frozenset({RUNNING, "pulling", "starting", "restarting"})
EDITABLE = frozenset({RUNNING, EXITED})
# Billing accrues from pulling until a stop completes (novita-api.md §3.2).
BILLED = frozenset(
    {"pulling", RUNNING, "toStop", "stopping", "toRestart", "restarting", "starting"}
)


class ApiError(Exception):
    """An answer in Novita's error envelope: {code, reason, message, metadata}."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.status, "reason": self.reason, "message": self.message, "metadata": {}}


def invalid_state_change() -> ApiError:
    return ApiError(400, "CONFLICT", "invalid state change")


def validation_error(message: str) -> ApiError:
    return ApiError(400, "VALIDATOR_PARAM", message)


def insufficient_resource() -> ApiError:
    return ApiError(400, "INSUFFICIENT_RESOURCE", "insufficient resource")


def balance_not_enough() -> ApiError:
    return ApiError(400, "BALANCE_NOT_ENOUGH", "balance not enough")


def storage_not_found() -> ApiError:
    return ApiError(400, "NETWORK_STORAGE_NOT_FOUND", "network storage not found")


class Clock:
    """The sandbox's clock: real time, moved forward by `advance` or held still by `freeze`.

    It never goes back: unfreezing carries on from the frozen moment. Change it under the lock.
    """

    def __init__(self, offset: float = 0.0, frozen_at: float | None = None) -> None:
        self.offset = offset
        self.frozen_at = frozen_at

    def now(self) -> float:
        frozen = self.frozen_at
        return frozen if frozen is not None else time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if self.frozen_at is not None:
            self.frozen_at += seconds
        else:
            self.offset += seconds

    def freeze(self, frozen: bool) -> None:
        if frozen and self.frozen_at is None:
            self.frozen_at = self.now()
        elif not frozen and self.frozen_at is not None:
            self.offset = self.frozen_at - time.time()
            self.frozen_at = None

    def to_json(self) -> dict[str, Any]:
        return {"now": self.now(), "offset": self.offset, "frozen": self.frozen_at is not None}


@dataclass(frozen=True)
class Prices:
    """A product's prices, 1/100000 USD: per card-hour (on-demand, spot; spot 0 = no spot offer)
    and per GB-day of a stopped instance's disk."""

    price: int
    spot_price: int
    exited_local_storage_price: int

    def compute(self, billing_mode: str) -> int:
        return self.spot_price if billing_mode == "spot" else self.price


@dataclass(frozen=True)
class Load:
    """What an instance's GPU metrics show while it runs: percentages, one per card for GPUs."""

    gpu: tuple[float, ...] = (0.0,)
    gpu_memory: tuple[float, ...] = (0.0,)
    cpu: float = 5.0
    memory: float = 10.0
    root_disk: float = 1.0

    def per_card(self, values: tuple[float, ...], cards: int) -> tuple[float, ...]:
        """One value per card: a single value stands for every card."""
        if len(values) == cards:
            return values
        return tuple(values[0] if values else 0.0 for _ in range(cards))


@dataclass
class Segment:
    at: float
    status: str
    error: str = ""  # statusError.message while this segment lasts
    error_state: str = ""  # statusError.state


@dataclass(frozen=True)
class Port:
    port: int
    type: str  # http | tcp


@dataclass(frozen=True)
class CreateSpec:
    """A validated create request (api.py checks the input, Sandbox.create the capacity)."""

    name: str
    product_id: str
    gpu_num: int
    rootfs_size: int
    image_url: str
    image_auth_id: str
    ports: tuple[Port, ...]
    envs: tuple[tuple[str, str], ...]
    command: str
    entrypoint: str
    cluster_id: str
    billing_mode: str
    month: int
    network_storages: tuple[tuple[str, str], ...]
    kind: str = "gpu"
    min_cuda_version: str = ""


@dataclass(eq=False)
class SandboxInstance:
    id: str
    spec: CreateSpec
    cluster_id: str
    created_at: float
    ssh_password: str
    image_broken: bool
    segments: list[Segment] = field(default_factory=list)
    app_boot: float = 0.0
    ports: tuple[Port, ...] = ()
    rootfs_size: int = 0
    spot_plan: list[tuple[float, str]] = field(default_factory=list)
    removed_at: float | None = None  # when `removed` begins
    purge_at: float | None = None  # when GET/list stop seeing it
    vanished: bool = False
    rootfs_plan: list[tuple[float, int]] = field(default_factory=list)  # (from, GB), for bills
    load_plan: list[tuple[float, Load]] = field(default_factory=list)  # GPU metrics, from when

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def product(self) -> Product:
        return PRODUCTS_BY_ID[self.spec.product_id]

    def segment_at(self, now: float) -> Segment:
        segments = self.segments
        for index in range(len(segments) - 1, 0, -1):
            if segments[index].at <= now:
                return segments[index]
        return segments[0]

    def status_at(self, now: float) -> str:
        return self.segment_at(now).status

    def history(self, now: float) -> list[Segment]:
        return [s for s in self.segments if s.at <= now]

    def last_start_of(self, status: str, now: float) -> float | None:
        for segment in reversed(self.segments):
            if segment.status == status and segment.at <= now:
                return segment.at
        return None

    def running_since(self, now: float) -> float | None:
        segment = self.segment_at(now)
        return segment.at if segment.status == RUNNING else None

    def spot_status_at(self, now: float) -> str:
        if self.spec.billing_mode != "spot":
            return ""
        status = "running"
        for at, spot_status in self.spot_plan:
            if at <= now:
                status = spot_status
        return status

    def billed_seconds(self, now: float) -> float:
        total = 0.0
        past = self.history(now)
        for index, segment in enumerate(past):
            if segment.status in BILLED:
                end = past[index + 1].at if index + 1 < len(past) else now
                total += end - segment.at
        return total

    def plan(
        self,
        now: float,
        steps: list[tuple[str, float]],
        final: str,
        *,
        error: str = "",
        error_state: str = "",
    ) -> float:
        """Replace the future with `steps` (status, dwell) then `final`; return final's time."""
        while len(self.segments) > 1 and self.segments[-1].at > now:
            self.segments.pop()
        at = now
        for status, dwell in steps:
            self.segments.append(Segment(at, status))
            at += dwell
        self.segments.append(Segment(at, final, error, error_state))
        return at


@dataclass(eq=False)
class NetworkStorage:
    id: str
    name: str
    cluster_id: str
    created_at: float
    sizes: list[tuple[float, int]]  # (from, GB): it only grows
    deleted_at: float | None = None

    @property
    def size(self) -> int:
        return self.sizes[-1][1]


JOB_RUNNING = "running"
JOB_STATES = ("pulling", "running", "fail", "success", "break")
JOB_TYPES = ("saveImage", "instanceMigrate", "autoInstanceMigrate")


@dataclass(eq=False)
class Job:
    id: str
    type: str
    instance_id: str
    image: str
    registry_auth_id: str
    created_at: float
    states: list[tuple[float, str]]  # (from, state): running, then success, fail or break
    failure: str = ""  # the message of a failed job

    def state_at(self, now: float) -> str:
        return billing.value_at(self.states, now)


def _glob(pattern: str, name: str) -> bool:
    return bool(pattern) and fnmatch.fnmatchcase(name, pattern)


def _contains(needle: str, haystack: str) -> bool:
    return bool(needle) and needle in haystack


class Sandbox:
    """All sandbox state. Methods that end in `_locked` expect the caller to hold `lock`."""

    def __init__(self, config: SandboxConfig, *, api_key: str) -> None:
        self.lock = threading.Lock()
        self.start_config = config
        self.api_key = api_key
        self.public_url = ""  # set by the server once it listens
        self.tcp_endpoint = ""
        self.changes = 0  # bumped by every change worth persisting (persist.py watches it)
        self._reset_locked()

    # --- configuration ------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self._reset_locked()

    def _reset_locked(self) -> None:
        config = self.start_config
        self.clock = Clock()
        now = self.clock.now()
        self.timing: Timing = config.timing
        self.faults: Faults = faults_activate(config.faults, time.time())
        self.fidelity: Fidelity = config.fidelity
        self.rng = random.Random(config.seed)
        # Volume and job ids draw from their own stream: instance ids stay what they were.
        self.id_rng = random.Random(f"{config.seed}/resources")
        self.instances: dict[str, SandboxInstance] = {}  # every instance since reset (the ledger)
        self.visible: dict[str, SandboxInstance] = {}  # what GET/list still see, oldest first
        self._purge_heap: list[tuple[float, str]] = []
        self.offer_overrides: dict[tuple[str, str], Offer] = {}
        # (clusterId or "*", productId, billingMode or "*") with no capacity (control API)
        self.capacity_off: set[tuple[str, str, str]] = set()
        # Capacity turned on for a number of creates only (POST /capacity {..., creates: N}):
        # the key is off again once they are used.
        self.capacity_creates: dict[tuple[str, str, str], int] = {}
        self.product_prices: dict[str, Timeline[Prices]] = {
            p.id: [(0.0, Prices(p.price, p.spot_price, p.exited_local_storage_price))]
            for p in PRODUCTS
        }
        self.storage_prices: dict[str, Timeline[int]] = {
            c.id: [(0.0, NETWORK_STORAGE_PRICE)]
            for c in CLUSTERS_BY_ID.values()
            if c.support_network_storage
        }
        self.storages: dict[str, NetworkStorage] = {
            seed.id: NetworkStorage(seed.id, seed.name, seed.cluster_id, now, [(now, seed.size)])
            for seed in SEED_STORAGES
        }
        self.jobs: dict[str, Job] = {}  # oldest first
        # cash(now) = cash_base - billed(now); credit is added to what may be spent
        self.cash_base = config.balance
        self.credit_limit = 0
        self._spent_cache: tuple[float, float, int] | None = None  # (real time, cutoff, spent)
        self.calls: Counter[tuple[str, str, int]] = Counter()
        self.call_log: deque[tuple[float, str, str, int]] = deque(maxlen=CALL_LOG_LIMIT)
        self.app_calls: Counter[int] = Counter()
        self.creates_by_name: Counter[str] = Counter()
        self._rate_window: deque[float] = deque()
        self.changes += 1

    def now(self) -> float:
        return self.clock.now()

    # --- admission: rate limit, deterministic failures, random errors --------------------------

    def admit_locked(
        self, method: str, path: str, now: float
    ) -> tuple[ApiError | None, FailRule | None]:
        """Decide, before a call is handled, whether a fault answers it instead.

        Returns the error to answer with (None: handle the call) and the fail_next rule that
        made it, if one did (its `drop` and `hang_s` say how the answer leaves).
        """
        faults = self.faults
        if faults.rate_limit_per_second > 0:
            window, span = self._rate_window, faults.rate_limit_window_s
            while window and window[0] <= now - span:
                window.popleft()
            if len(window) >= faults.rate_limit_per_second * span:
                retry_after = max(1, math.ceil(window[0] + span - now))
                error = ApiError(
                    429,
                    "RATE_LIMIT_EXCEEDED",
                    "too many requests",
                    headers={"Retry-After": str(retry_after)},
                )
                return error, None
            window.append(now)
        rule = self.take_rule_locked(method, path, now, after_effect=False)
        if rule is not None:
            return rule_error(rule), rule
        if faults.error_rate > 0 and self.rng.random() < faults.error_rate:
            return ApiError(500, "UNKNOWN", "internal error"), None
        return None, None

    def take_rule_locked(
        self, method: str, path: str, now: float, *, after_effect: bool
    ) -> FailRule | None:
        """The first matching fail_next rule of the given kind, its count decremented."""
        rules = list(self.faults.fail_next)
        for index, rule in enumerate(rules):
            if rule.after_effect == after_effect and rule.matches(method, path, now):
                if rule.count > 0:  # a used-up rule goes away; -1 stays until `until`
                    if rule.count == 1:
                        del rules[index]
                    else:
                        rules[index] = dataclasses.replace(rule, count=rule.count - 1)
                    self.faults = dataclasses.replace(self.faults, fail_next=tuple(rules))
                return rule
        return None

    def record_locked(self, method: str, path: str, status: int, at: float) -> None:
        self.calls[(method, path, status)] += 1
        self.call_log.append((at, method, path, status))

    # --- catalog ------------------------------------------------------------------------------

    def offer(self, product: Product, cluster_id: str) -> Offer | None:
        override = self.offer_overrides.get((cluster_id, product.id))
        return override if override is not None else product.offers.get(cluster_id)

    def capacity_on(self, product_id: str, cluster_id: str, billing_mode: str) -> bool:
        """False where the control API turned this product's capacity off for this mode."""
        off = self.capacity_off
        if not off:
            return True
        return not any(
            (cluster, product_id, mode) in off
            for cluster in (cluster_id, "*")
            for mode in (billing_mode, "*")
        )

    def _take_capacity_create_locked(self, product_id: str, cluster_id: str, mode: str) -> None:
        """A create uses one of the creates its capacity was turned on for; the last one turns
        it off again."""
        for key in [(c, product_id, m) for c in (cluster_id, "*") for m in (mode, "*")]:
            left = self.capacity_creates.get(key)
            if left is None:
                continue
            if left <= 1:
                del self.capacity_creates[key]
                self.capacity_off.add(key)
            else:
                self.capacity_creates[key] = left - 1

    def deployable(
        self, product: Product, cluster_id: str, billing_mode: str, gpu_num: int = 1
    ) -> bool:
        offer = self.offer(product, cluster_id)
        return (
            offer is not None
            and offer.available_deploy
            and offer.available_gpus >= gpu_num
            and self.capacity_on(product.id, cluster_id, billing_mode)
        )

    def prices(self, product_id: str, at: float) -> Prices:
        return billing.value_at(self.product_prices[product_id], at)

    def set_prices_locked(self, product_id: str, now: float, **changes: int) -> Prices:
        """New prices from `now` on: what is billed after now changes, what was billed stays."""
        timeline = self.product_prices[product_id]
        prices = dataclasses.replace(billing.value_at(timeline, now), **changes)
        timeline[:] = [(at, p) for at, p in timeline if at < now] + [(now, prices)]
        self.forget_spent_locked()
        return prices

    def set_storage_price_locked(self, cluster_id: str, now: float, price: int) -> None:
        timeline = self.storage_prices[cluster_id]
        timeline[:] = [(at, p) for at, p in timeline if at < now] + [(now, price)]
        self.forget_spent_locked()

    def _take_capacity_error_locked(self, table: str, cluster_id: str, product_id: str) -> bool:
        counts: dict[str, int] = getattr(self.faults, table)
        for key in (f"{cluster_id}/{product_id}", cluster_id, "*"):
            left = counts.get(key, 0)
            if left:
                if left > 0:
                    changed = dict(counts)
                    changed[key] = left - 1
                    if not changed[key]:
                        del changed[key]
                    if table == "capacity_errors":
                        self.faults = dataclasses.replace(self.faults, capacity_errors=changed)
                    else:
                        self.faults = dataclasses.replace(
                            self.faults, start_capacity_errors=changed
                        )
                return True
        return False

    # --- instances ----------------------------------------------------------------------------

    def purge_locked(self, now: float) -> None:
        heap = self._purge_heap
        while heap and heap[0][0] <= now:
            _, instance_id = heapq.heappop(heap)
            self.visible.pop(instance_id, None)

    def get_locked(self, instance_id: str, now: float) -> SandboxInstance:
        self.purge_locked(now)
        instance = self.visible.get(instance_id)
        if instance is None:
            status = self.faults.not_found_status
            raise ApiError(
                status, "RESOURCE_NOT_FOUND", f"instance {self.faults.not_found_spelling}"
            )
        return instance

    def _new_id_locked(self) -> str:
        while True:
            instance_id = f"{self.rng.getrandbits(64):016x}"
            if instance_id not in self.instances:
                return instance_id

    def _password_locked(self) -> str:
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
        return "Sbx-" + "".join(self.rng.choice(alphabet) for _ in range(12))

    def create_locked(self, spec: CreateSpec, now: float) -> SandboxInstance:
        product = PRODUCTS_BY_ID[spec.product_id]
        storages = [self.storage_locked(sid) for sid, _ in spec.network_storages]
        cluster_id = spec.cluster_id
        if cluster_id:
            if self.offer(product, cluster_id) is None:
                raise validation_error(
                    f"product {product.id} is not offered in cluster {cluster_id}"
                )
        else:
            # A volume pins the instance to its cluster.
            wanted = {s.cluster_id for s in storages}
            candidates = [
                cid
                for cid in CLUSTERS_BY_ID
                if (not wanted or cid in wanted)
                and (o := self.offer(product, cid)) is not None
                and o.available_deploy
                and self.capacity_on(product.id, cid, spec.billing_mode)
            ]
            if not candidates:
                raise insufficient_resource()
            cluster_id = self.rng.choice(candidates)
        for storage in storages:
            if storage.cluster_id != cluster_id:
                raise ApiError(
                    400,
                    "NETWORK_STORAGE_UNAVAILABLE",
                    f"network storage {storage.id} is not in cluster {cluster_id}",
                )
        if not self.deployable(product, cluster_id, spec.billing_mode, spec.gpu_num):
            raise insufficient_resource()
        if self._take_capacity_error_locked("capacity_errors", cluster_id, product.id):
            raise insufficient_resource()
        self._take_capacity_create_locked(product.id, cluster_id, spec.billing_mode)
        self._check_balance_locked(self._upfront_cost(product, spec, now), now)
        faults = self.faults
        image_broken = (
            _glob(faults.pull_fail_name, spec.name)
            or _contains(faults.pull_fail_image, spec.image_url)
            or faults.pull_fail_next > 0
        )
        if faults.pull_fail_next > 0:
            self.faults = dataclasses.replace(faults, pull_fail_next=faults.pull_fail_next - 1)
        instance = SandboxInstance(
            id=self._new_id_locked(),
            spec=spec,
            cluster_id=cluster_id,
            created_at=now,
            ssh_password=self._password_locked(),
            image_broken=image_broken,
            ports=spec.ports,
            rootfs_size=spec.rootfs_size,
            rootfs_plan=[(now, spec.rootfs_size)],
            load_plan=[(now, Load())],
        )
        self._boot_locked(instance, now, [("toCreate", self.timing.to_create)])
        self.instances[instance.id] = instance
        self.visible[instance.id] = instance
        self.creates_by_name[spec.name] += 1
        return instance

    def _boot_locked(
        self, instance: SandboxInstance, now: float, steps: list[tuple[str, float]]
    ) -> None:
        """Plan `steps`, then creating/pulling (or just pulling) and running or a failed pull."""
        timing = self.timing
        if steps[0][0] == "toCreate":
            steps = [*steps, ("creating", timing.creating)]
        steps = [*steps, ("pulling", timing.pulling)]
        instance.app_boot = timing.app_boot
        instance.spot_plan = []
        if instance.image_broken:
            message = f"failed to pull image: {instance.spec.image_url}: manifest unknown"
            instance.plan(now, steps, EXITED, error=message, error_state="pulling")
        else:
            instance.plan(now, steps, RUNNING)

    def stop_locked(self, instance: SandboxInstance, now: float) -> str:
        if instance.status_at(now) not in STOPPABLE:
            raise invalid_state_change()
        t = self.timing
        instance.plan(now, [("toStop", t.to_stop), ("stopping", t.stopping)], EXITED)
        return "toStop"

    def start_locked(self, instance: SandboxInstance, now: float) -> str:
        if instance.status_at(now) != EXITED:
            raise invalid_state_change()
        if self._take_capacity_error_locked(
            "start_capacity_errors", instance.cluster_id, instance.spec.product_id
        ):
            raise insufficient_resource()
        self._check_balance_locked(self._upfront_cost(instance.product, instance.spec, now), now)
        t = self.timing
        steps = [("toStart", t.to_start), ("starting", t.starting)]
        if instance.image_broken:
            self._boot_locked(instance, now, steps)
        else:
            instance.app_boot = t.app_boot
            instance.spot_plan = []
            instance.plan(now, steps, RUNNING)
        return "toStart"

    def restart_locked(self, instance: SandboxInstance, now: float) -> None:
        if instance.status_at(now) != RUNNING:
            raise invalid_state_change()
        t = self.timing
        instance.app_boot = t.app_boot
        instance.plan(now, [("toRestart", t.to_restart), ("restarting", t.restarting)], RUNNING)

    def migrate_locked(self, instance: SandboxInstance, now: float) -> None:
        if instance.status_at(now) != EXITED:
            raise invalid_state_change()
        self._boot_locked(instance, now, [("migrating", self.timing.migrating)])

    def delete_locked(self, instance: SandboxInstance, now: float) -> None:
        if instance.spec.billing_mode == "monthly":
            raise ApiError(
                400,
                "PREPAID_INSTANCE_NOT_SUPPORT_RELEASE",
                "prepaid instance does not support release",
            )
        if instance.status_at(now) in REMOVE_STATES or instance.removed_at is not None:
            return  # already on its way out: deleting again changes nothing
        t = self.timing
        removed_at = instance.plan(
            now, [("toRemove", t.to_remove), ("removing", t.removing)], REMOVED
        )
        self._schedule_purge_locked(instance, removed_at, removed_at + t.removed_linger)

    def _schedule_purge_locked(
        self, instance: SandboxInstance, removed_at: float, purge_at: float
    ) -> None:
        instance.removed_at = removed_at
        instance.purge_at = purge_at
        heapq.heappush(self._purge_heap, (purge_at, instance.id))

    def edit_locked(
        self,
        instance: SandboxInstance,
        now: float,
        ports: tuple[Port, ...] | None,
        rootfs: int | None,
    ) -> None:
        if instance.status_at(now) not in EDITABLE:
            raise invalid_state_change()
        if rootfs is not None:
            if rootfs < instance.rootfs_size:
                raise validation_error("expandRootDisk cannot shrink the root disk")
            if rootfs > instance.product.max_rootfs:
                raise validation_error(f"rootfsSize must be <= {instance.product.max_rootfs}")
            instance.rootfs_size = rootfs
            instance.rootfs_plan.append((now, rootfs))
        if ports is not None:
            instance.ports = ports

    # --- network storage ----------------------------------------------------------------------

    def _new_resource_id_locked(self, prefix: str, taken: dict[str, Any]) -> str:
        while True:
            resource_id = f"{prefix}{self.id_rng.getrandbits(32):08x}"
            if resource_id not in taken:
                return resource_id

    def storage_locked(self, storage_id: str) -> NetworkStorage:
        storage = self.storages.get(storage_id)
        if storage is None or storage.deleted_at is not None:
            raise storage_not_found()
        return storage

    def mounted_by_locked(self, storage: NetworkStorage, now: float) -> list[SandboxInstance]:
        """The instances that hold the volume: every one not on its way out."""
        return [
            i
            for i in self.visible.values()
            if i.removed_at is None  # set once a delete is accepted
            and any(sid == storage.id for sid, _ in i.spec.network_storages)
        ]

    def storage_create_locked(
        self, cluster_id: str, name: str, size: int, now: float
    ) -> NetworkStorage:
        cluster = CLUSTERS_BY_ID[cluster_id]
        if not cluster.support_network_storage:
            raise ApiError(
                400,
                "CUR_CLUSTER_NETWORK_STORAGE_NOT_SUPPORT",
                f"cluster {cluster_id} does not support network storage",
            )
        _check_storage_size(size)
        storage = NetworkStorage(
            id=self._new_resource_id_locked("ns-", self.storages),
            name=name,
            cluster_id=cluster_id,
            created_at=now,
            sizes=[(now, size)],
        )
        self.storages[storage.id] = storage
        return storage

    def storage_update_locked(
        self, storage: NetworkStorage, now: float, *, name: str | None, size: int | None
    ) -> None:
        if size is not None:
            if size < storage.size:
                raise validation_error("storageSize can only grow")
            _check_storage_size(size)
        if name is not None:
            storage.name = name
        if size is not None and size != storage.size:
            storage.sizes.append((now, size))

    def storage_delete_locked(self, storage: NetworkStorage, now: float) -> None:
        if self.mounted_by_locked(storage, now):
            raise ApiError(400, "NETWORK_STORAGE_IN_USE", "network storage is in use")
        storage.deleted_at = now

    # --- jobs -----------------------------------------------------------------------------------

    def save_image_locked(
        self, instance: SandboxInstance, image: str, registry_auth_id: str, now: float
    ) -> Job:
        if instance.status_at(now) not in (RUNNING, EXITED):
            raise invalid_state_change()
        if any(
            j.instance_id == instance.id and j.state_at(now) == JOB_RUNNING
            for j in self.jobs.values()
        ):
            raise ApiError(400, "OPERATION_LIMIT", "a job is already running on this instance")
        if registry_auth_id and registry_auth_id not in REGISTRY_AUTHS_BY_ID:
            raise validation_error(f"registryAuthId {registry_auth_id} does not exist")
        fails = _contains(self.faults.save_image_fail_image, image)
        done = now + self.timing.save_image
        job = Job(
            id=self._new_resource_id_locked("job-", self.jobs),
            type="saveImage",
            instance_id=instance.id,
            image=image,
            registry_auth_id=registry_auth_id,
            created_at=now,
            states=[(now, JOB_RUNNING), (done, "fail" if fails else "success")],
            failure=f"failed to push image {image}: denied" if fails else "",
        )
        self.jobs[job.id] = job
        return job

    def job_locked(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(400, "JOB_NOT_FOUND", "job not found")
        return job

    def job_break_locked(self, job: Job, now: float) -> None:
        if job.state_at(now) != JOB_RUNNING:
            raise invalid_state_change()
        job.states = [(at, state) for at, state in job.states if at <= now] + [(now, "break")]

    # --- GPU load (what the metrics show) ---------------------------------------------------------

    def set_load_locked(self, instance: SandboxInstance, now: float, **changes: Any) -> Load:
        load = dataclasses.replace(billing.value_at(instance.load_plan, now), **changes)
        instance.load_plan = [(at, v) for at, v in instance.load_plan if at < now] + [(now, load)]
        return load

    # --- money ------------------------------------------------------------------------------------

    def bill_cutoff(self, now: float) -> float:
        """What bills and the balance count up to: now, or the hour that ended last."""
        if self.fidelity.bills_settle_hourly:
            return math.floor(now / HOUR) * HOUR
        return now

    def usages_locked(self, end: float, owner_id: str = "") -> list[Usage]:
        """Everything chargeable until `end` (one owner's, with owner_id)."""
        out: list[Usage] = []
        for instance in self.instances.values():
            if not owner_id or instance.id == owner_id:
                out += self._instance_usages(instance, end)
        for storage in self.storages.values():
            if owner_id and storage.id != owner_id:
                continue
            stop = end if storage.deleted_at is None else min(end, storage.deleted_at)
            prices = self.storage_prices[storage.cluster_id]
            for a, b, (size, price) in billing.pieces(
                storage.created_at, stop, storage.sizes, prices
            ):
                out.append(
                    Usage(
                        storage.id,
                        NETWORK_STORAGE_PRODUCT,
                        CLOUD_STORAGE,
                        "onDemand",
                        price,
                        a,
                        b,
                        per_second=Fraction(size, DAY),
                    )
                )
        return out

    def _instance_usages(self, instance: SandboxInstance, end: float) -> list[Usage]:
        spec, product = instance.spec, instance.product
        prices = self.product_prices[product.id]
        out: list[Usage] = []
        if spec.billing_mode == "monthly" and instance.created_at < end:
            out.append(
                Usage(
                    instance.id,
                    product.name,
                    GPU,
                    "monthly",
                    _monthly_price(product, spec.month),
                    instance.created_at,
                    instance.created_at,
                    lump=Fraction(spec.gpu_num),
                )
            )
        past = instance.history(end)
        for index, segment in enumerate(past):
            stop = past[index + 1].at if index + 1 < len(past) else end
            if segment.status in BILLED and spec.billing_mode != "monthly":
                for a, b, (p,) in billing.pieces(segment.at, stop, prices):
                    out.append(
                        Usage(
                            instance.id,
                            product.name,
                            GPU,
                            spec.billing_mode,
                            p.compute(spec.billing_mode),
                            a,
                            b,
                            per_second=Fraction(spec.gpu_num, HOUR),
                        )
                    )
            elif segment.status == EXITED:
                for a, b, (p, size) in billing.pieces(
                    segment.at, stop, prices, instance.rootfs_plan
                ):
                    out.append(
                        Usage(
                            instance.id,
                            f"{product.name} Local Storage",
                            GPU,
                            "onDemand",
                            p.exited_local_storage_price,
                            a,
                            b,
                            per_second=Fraction(size, DAY),
                        )
                    )
        return out

    def spent_locked(self, now: float, *, fresh: bool = True) -> int:
        """Billed so far, 1/10000 USD. fresh=False may answer from a computation up to a second
        old (a create's balance check must not walk every instance's history each time)."""
        cutoff = self.bill_cutoff(now)
        cached = self._spent_cache
        real = time.time()
        if not fresh and cached is not None and real - cached[0] < 1.0 and cached[1] <= cutoff:
            return cached[2]
        spent = billing.total(self.usages_locked(cutoff), cutoff)
        self._spent_cache = (real, cutoff, spent)
        return spent

    def forget_spent_locked(self) -> None:
        self._spent_cache = None

    def balance_locked(self, now: float, *, fresh: bool = True) -> dict[str, int]:
        """Novita's balance detail, 1/10000 USD. Cash cannot go below zero: what is owed beyond
        it is an outstanding invoice."""
        cash = self.cash_base - self.spent_locked(now, fresh=fresh)
        outstanding = max(0, -cash)
        cash = max(0, cash)
        return {
            "availableBalance": cash + self.credit_limit - outstanding,
            "cashBalance": cash,
            "creditLimit": self.credit_limit,
            "outstandingInvoices": outstanding,
        }

    def set_balance_locked(
        self, now: float, *, cash: int | None = None, credit_limit: int | None = None
    ) -> None:
        if cash is not None:
            self.cash_base = cash + self.spent_locked(now)
        if credit_limit is not None:
            self.credit_limit = credit_limit

    def _upfront_cost(self, product: Product, spec: CreateSpec, now: float) -> int:
        """What a create or start needs in the balance: an hour of compute, or the whole
        subscription of a monthly instance."""
        if spec.billing_mode == "monthly":
            return billing.cost_ceil(_monthly_price(product, spec.month), spec.gpu_num)
        unit = self.prices(product.id, now).compute(spec.billing_mode)
        return billing.cost_ceil(unit, spec.gpu_num)

    def _check_balance_locked(self, cost: int, now: float) -> None:
        if self.balance_locked(now, fresh=False)["availableBalance"] < cost:
            raise balance_not_enough()

    # --- control-only actions -----------------------------------------------------------------

    def reclaim_locked(
        self,
        instance: SandboxInstance,
        now: float,
        *,
        notice: float | None = None,
        reclaiming: float | None = None,
    ) -> None:
        """Spot reclaim: notified now, reclaiming after the notice (the spotReclaimTime), then
        terminated; the instance ends `exited`. Lead times default to the timing's."""
        if instance.spec.billing_mode != "spot":
            raise ValueError("only spot instances are reclaimed")
        if instance.status_at(now) not in STOPPABLE:
            raise ValueError("the instance is not running")
        t = self.timing
        reclaiming_at = now + (t.reclaim_notice if notice is None else notice)
        terminated_at = reclaiming_at + (t.reclaiming if reclaiming is None else reclaiming)
        instance.spot_plan = [
            (now, "notified"),
            (reclaiming_at, "reclaiming"),
            (terminated_at, "terminated"),
        ]
        while len(instance.segments) > 1 and instance.segments[-1].at > now:
            instance.segments.pop()
        instance.segments.append(Segment(reclaiming_at, "stopping"))
        instance.segments.append(Segment(terminated_at, EXITED))

    def vanish_locked(self, instance: SandboxInstance, now: float) -> None:
        """The instance disappears from Novita at once, without walking toRemove/removing."""
        instance.plan(now, [], REMOVED)
        instance.vanished = True
        self._schedule_purge_locked(instance, now, now)
        self.purge_locked(now)

    # --- apps behind the http endpoints ---------------------------------------------------------

    def app_unhealthy(self, instance: SandboxInstance) -> bool:
        faults = self.faults
        return _glob(faults.unhealthy_name, instance.name) or _contains(
            faults.unhealthy_image, instance.spec.image_url
        )

    def app_proxy_error(self, instance: SandboxInstance) -> bool:
        faults = self.faults
        return _glob(faults.proxy_error_name, instance.name) or _contains(
            faults.proxy_error_image, instance.spec.image_url
        )

    def app_ready_at(self, instance: SandboxInstance, now: float) -> float | None:
        """When the app began answering 200 in its latest run (None: it has not)."""
        if self.app_unhealthy(instance):
            return None
        past = instance.history(now)
        for index in range(len(past) - 1, -1, -1):
            segment = past[index]
            if segment.status == RUNNING:
                ready = segment.at + instance.app_boot
                end = past[index + 1].at if index + 1 < len(past) else None
                if ready <= now and (end is None or ready < end):
                    return ready
        return None

    # --- views for the control endpoints ---------------------------------------------------------

    def stats_locked(self, now: float) -> dict[str, Any]:
        self.purge_locked(now)
        calls: dict[str, dict[str, int]] = defaultdict(dict)
        for (method, path, status), count in sorted(self.calls.items()):
            calls[f"{method} {path}"][str(status)] = count
        by_status: Counter[str] = Counter(i.status_at(now) for i in self.instances.values())
        live = sum(1 for i in self.instances.values() if i.status_at(now) != REMOVED)
        return {
            "calls": dict(calls),
            "app_calls": {str(k): v for k, v in sorted(self.app_calls.items())},
            "instances_by_status": dict(sorted(by_status.items())),
            "creates_by_name": dict(self.creates_by_name),
            "live_instances": live,
            "visible_instances": len(self.visible),
        }

    def instance_view_locked(self, instance: SandboxInstance, now: float) -> dict[str, Any]:
        segment = instance.segment_at(now)
        return {
            "id": instance.id,
            "name": instance.name,
            "clusterId": instance.cluster_id,
            "productId": instance.spec.product_id,
            "billingMode": instance.spec.billing_mode,
            "imageUrl": instance.spec.image_url,
            # what the create asked for beyond the wire's instance view
            "command": instance.spec.command,
            "entrypoint": instance.spec.entrypoint,
            "minCudaVersion": instance.spec.min_cuda_version,
            "networkStorages": [
                {"Id": storage_id, "mountPoint": mount}
                for storage_id, mount in instance.spec.network_storages
            ],
            "status": segment.status,
            "spotStatus": instance.spot_status_at(now),
            "status_history": [{"status": s.status, "at": s.at} for s in instance.history(now)],
            "created_at": instance.created_at,
            "app_ready_at": self.app_ready_at(instance, now),
            "removed_at": instance.removed_at
            if instance.removed_at is not None and instance.removed_at <= now
            else None,
            "visible": instance.purge_at is None or instance.purge_at > now,
            "vanished": instance.vanished,
            "billed_seconds": round(instance.billed_seconds(now), 3),
        }

    def storage_view(self, storage: NetworkStorage) -> dict[str, Any]:
        return {
            "id": storage.id,
            "name": storage.name,
            "clusterId": storage.cluster_id,
            "size": storage.size,
            "sizes": [{"at": at, "size": size} for at, size in storage.sizes],
            "created_at": storage.created_at,
            "deleted_at": storage.deleted_at,
        }

    def job_view(self, job: Job, now: float) -> dict[str, Any]:
        return {
            "id": job.id,
            "type": job.type,
            "instanceId": job.instance_id,
            "image": job.image,
            "registryAuthId": job.registry_auth_id,
            "state": job.state_at(now),
            "states": [{"at": at, "state": state} for at, state in job.states],
            "created_at": job.created_at,
        }

    def calls_since_locked(self, since: float | None) -> list[dict[str, Any]]:
        return [
            {"at": at, "method": method, "path": path, "status": status}
            for at, method, path, status in self.call_log
            if since is None or at >= since
        ]


def _check_storage_size(size: int) -> None:
    if size < NETWORK_STORAGE_MIN_GB:
        raise validation_error(f"storageSize must be >= {NETWORK_STORAGE_MIN_GB}")
    if size > NETWORK_STORAGE_MAX_GB:
        raise ApiError(
            400,
            "NETWORK_STORAGE_TOO_LARGE",
            f"storageSize must be <= {NETWORK_STORAGE_MAX_GB}",
        )


def _monthly_price(product: Product, month: int) -> int:
    """The subscription price for `month` months per card, 1/100000 USD: the listed one, else
    that many times the shortest one's monthly rate."""
    listed = dict((m, p) for p, m in product.monthly_prices)
    if month in listed:
        return listed[month]
    price, months = min(product.monthly_prices, key=lambda pm: pm[1])
    return price * month // months


def rule_error(rule: FailRule) -> ApiError:
    reason = rule.reason or {
        400: "VALIDATOR_PARAM",
        401: "UNAUTHORIZED",
        403: "FORBIDDEN",
        404: "RESOURCE_NOT_FOUND",
        429: "RATE_LIMIT_EXCEEDED",
    }.get(rule.status, "UNKNOWN" if rule.status >= 500 else "REQUEST")
    message = rule.message or {
        429: "too many requests",
        502: "bad gateway",
        503: "service unavailable",
        504: "gateway timeout",
    }.get(rule.status, "injected failure")
    headers: dict[str, str] = {}
    retry_after = rule.retry_after
    if retry_after is None and rule.status == 429:
        retry_after = 1
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return ApiError(rule.status, reason, message, headers=headers)
