"""The simulated Novita: instances, their lifecycle on a wall clock, faults, and the call ledger.

Statuses are not advanced by threads. Each action (create, stop, start, restart, delete,
migrate, reclaim) writes a plan: a list of timestamped segments, the first starting now and each
later one when the previous status's dwell time has run out. The status at any moment is the
last segment that has begun. An action taken mid-plan drops the segments still in the future.

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
from typing import Any

from .catalog import CLUSTERS_BY_ID, PRODUCTS_BY_ID, Offer, Product
from .config import FailRule, Faults, SandboxConfig, Timing, faults_activate

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


@dataclass(eq=False)
class Instance:
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
        self._reset_locked(time.time())

    # --- configuration ------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self._reset_locked(time.time())

    def _reset_locked(self, now: float) -> None:
        config = self.start_config
        self.timing: Timing = config.timing
        self.faults: Faults = faults_activate(config.faults, now)
        self.rng = random.Random(config.seed)
        self.instances: dict[str, Instance] = {}  # every instance since reset (the ledger)
        self.visible: dict[str, Instance] = {}  # what GET/list still see, oldest first
        self._purge_heap: list[tuple[float, str]] = []
        self.offer_overrides: dict[tuple[str, str], Offer] = {}
        self.calls: Counter[tuple[str, str, int]] = Counter()
        self.call_log: deque[tuple[float, str, str, int]] = deque(maxlen=CALL_LOG_LIMIT)
        self.app_calls: Counter[int] = Counter()
        self.creates_by_name: Counter[str] = Counter()
        self._rate_window: deque[float] = deque()

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

    def get_locked(self, instance_id: str, now: float) -> Instance:
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

    def create_locked(self, spec: CreateSpec, now: float) -> Instance:
        product = PRODUCTS_BY_ID[spec.product_id]
        cluster_id = spec.cluster_id
        if cluster_id:
            offer = self.offer(product, cluster_id)
            if offer is None:
                raise validation_error(
                    f"product {product.id} is not offered in cluster {cluster_id}"
                )
        else:
            candidates = [
                cid
                for cid in CLUSTERS_BY_ID
                if (o := self.offer(product, cid)) is not None and o.available_deploy
            ]
            if not candidates:
                raise insufficient_resource()
            cluster_id = self.rng.choice(candidates)
            offer = self.offer(product, cluster_id)
            assert offer is not None
        if not offer.available_deploy or spec.gpu_num > offer.available_gpus:
            raise insufficient_resource()
        if self._take_capacity_error_locked("capacity_errors", cluster_id, product.id):
            raise insufficient_resource()
        faults = self.faults
        image_broken = (
            _glob(faults.pull_fail_name, spec.name)
            or _contains(faults.pull_fail_image, spec.image_url)
            or faults.pull_fail_next > 0
        )
        if faults.pull_fail_next > 0:
            self.faults = dataclasses.replace(faults, pull_fail_next=faults.pull_fail_next - 1)
        instance = Instance(
            id=self._new_id_locked(),
            spec=spec,
            cluster_id=cluster_id,
            created_at=now,
            ssh_password=self._password_locked(),
            image_broken=image_broken,
            ports=spec.ports,
            rootfs_size=spec.rootfs_size,
        )
        self._boot_locked(instance, now, [("toCreate", self.timing.to_create)])
        self.instances[instance.id] = instance
        self.visible[instance.id] = instance
        self.creates_by_name[spec.name] += 1
        return instance

    def _boot_locked(self, instance: Instance, now: float, steps: list[tuple[str, float]]) -> None:
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

    def stop_locked(self, instance: Instance, now: float) -> str:
        if instance.status_at(now) not in STOPPABLE:
            raise invalid_state_change()
        t = self.timing
        instance.plan(now, [("toStop", t.to_stop), ("stopping", t.stopping)], EXITED)
        return "toStop"

    def start_locked(self, instance: Instance, now: float) -> str:
        if instance.status_at(now) != EXITED:
            raise invalid_state_change()
        if self._take_capacity_error_locked(
            "start_capacity_errors", instance.cluster_id, instance.spec.product_id
        ):
            raise insufficient_resource()
        t = self.timing
        steps = [("toStart", t.to_start), ("starting", t.starting)]
        if instance.image_broken:
            self._boot_locked(instance, now, steps)
        else:
            instance.app_boot = t.app_boot
            instance.spot_plan = []
            instance.plan(now, steps, RUNNING)
        return "toStart"

    def restart_locked(self, instance: Instance, now: float) -> None:
        if instance.status_at(now) != RUNNING:
            raise invalid_state_change()
        t = self.timing
        instance.app_boot = t.app_boot
        instance.plan(now, [("toRestart", t.to_restart), ("restarting", t.restarting)], RUNNING)

    def migrate_locked(self, instance: Instance, now: float) -> None:
        if instance.status_at(now) != EXITED:
            raise invalid_state_change()
        self._boot_locked(instance, now, [("migrating", self.timing.migrating)])

    def delete_locked(self, instance: Instance, now: float) -> None:
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
        self, instance: Instance, removed_at: float, purge_at: float
    ) -> None:
        instance.removed_at = removed_at
        instance.purge_at = purge_at
        heapq.heappush(self._purge_heap, (purge_at, instance.id))

    def edit_locked(
        self, instance: Instance, now: float, ports: tuple[Port, ...] | None, rootfs: int | None
    ) -> None:
        if instance.status_at(now) not in EDITABLE:
            raise invalid_state_change()
        if rootfs is not None:
            if rootfs < instance.rootfs_size:
                raise validation_error("expandRootDisk cannot shrink the root disk")
            if rootfs > instance.product.max_rootfs:
                raise validation_error(f"rootfsSize must be <= {instance.product.max_rootfs}")
            instance.rootfs_size = rootfs
        if ports is not None:
            instance.ports = ports

    # --- control-only actions -----------------------------------------------------------------

    def reclaim_locked(self, instance: Instance, now: float) -> None:
        """Spot reclaim: notified -> reclaiming -> terminated; the instance ends `exited`."""
        if instance.spec.billing_mode != "spot":
            raise ValueError("only spot instances are reclaimed")
        if instance.status_at(now) not in STOPPABLE:
            raise ValueError("the instance is not running")
        t = self.timing
        reclaiming_at = now + t.reclaim_notice
        terminated_at = reclaiming_at + t.reclaiming
        instance.spot_plan = [
            (now, "notified"),
            (reclaiming_at, "reclaiming"),
            (terminated_at, "terminated"),
        ]
        while len(instance.segments) > 1 and instance.segments[-1].at > now:
            instance.segments.pop()
        instance.segments.append(Segment(reclaiming_at, "stopping"))
        instance.segments.append(Segment(terminated_at, EXITED))

    def vanish_locked(self, instance: Instance, now: float) -> None:
        """The instance disappears from Novita at once, without walking toRemove/removing."""
        instance.plan(now, [], REMOVED)
        instance.vanished = True
        self._schedule_purge_locked(instance, now, now)
        self.purge_locked(now)

    # --- apps behind the http endpoints ---------------------------------------------------------

    def app_unhealthy(self, instance: Instance) -> bool:
        faults = self.faults
        return _glob(faults.unhealthy_name, instance.name) or _contains(
            faults.unhealthy_image, instance.spec.image_url
        )

    def app_proxy_error(self, instance: Instance) -> bool:
        faults = self.faults
        return _glob(faults.proxy_error_name, instance.name) or _contains(
            faults.proxy_error_image, instance.spec.image_url
        )

    def app_ready_at(self, instance: Instance, now: float) -> float | None:
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

    def instance_view_locked(self, instance: Instance, now: float) -> dict[str, Any]:
        segment = instance.segment_at(now)
        return {
            "id": instance.id,
            "name": instance.name,
            "clusterId": instance.cluster_id,
            "productId": instance.spec.product_id,
            "billingMode": instance.spec.billing_mode,
            "imageUrl": instance.spec.image_url,
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

    def calls_since_locked(self, since: float | None) -> list[dict[str, Any]]:
        return [
            {"at": at, "method": method, "path": path, "status": status}
            for at, method, path, status in self.call_log
            if since is None or at >= since
        ]


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
