"""The sandbox's world on disk, so that a restart keeps what Novita would have kept.

One JSON file, `<state dir>/sandbox-state.json`, written atomically (a temporary file, fsynced,
renamed over the old one) by a thread that looks twice a second and writes when something
changed (`Sandbox.changes` moved: every POST, API or control), and once more on stop.

Kept: instances with their status plans, network storage, jobs, prices, the balance, offers and
capacity switches, GPU load, names created, the random streams (ids go on where they were) and
the clock's offset. All times are the sandbox clock's, so an instance that was pulling when the
sandbox stopped has gone on pulling meanwhile and may be running when it is back, as on Novita;
a running one is still running, and still billed for the time the sandbox was down.

Not kept: what the command line says at each start (timing, faults, fidelity), call counts and
the call log. A file that cannot be read is an error (PersistError), never a silent fresh start:
`--fresh` starts clean on purpose.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import os
import random
import threading
from pathlib import Path
from typing import Any

from .catalog import CLUSTERS_BY_ID, PRODUCTS_BY_ID, Offer
from .state import (
    Clock,
    CreateSpec,
    Job,
    Load,
    NetworkStorage,
    Port,
    Prices,
    Sandbox,
    SandboxInstance,
    Segment,
)

STATE_FILE = "sandbox-state.json"
VERSION = 1
FLUSH_EVERY_S = 0.5


class PersistError(RuntimeError):
    """The state file exists but cannot be read into a sandbox."""


# --- to JSON -------------------------------------------------------------------------------------


def _instance(instance: SandboxInstance) -> dict[str, Any]:
    spec = dataclasses.asdict(instance.spec)
    return {
        "id": instance.id,
        "spec": spec,
        "cluster_id": instance.cluster_id,
        "created_at": instance.created_at,
        "ssh_password": instance.ssh_password,
        "image_broken": instance.image_broken,
        "segments": [[s.at, s.status, s.error, s.error_state] for s in instance.segments],
        "app_boot": instance.app_boot,
        "ports": [[p.port, p.type] for p in instance.ports],
        "rootfs_size": instance.rootfs_size,
        "spot_plan": [list(entry) for entry in instance.spot_plan],
        "removed_at": instance.removed_at,
        "purge_at": instance.purge_at,
        "vanished": instance.vanished,
        "rootfs_plan": [list(entry) for entry in instance.rootfs_plan],
        "load_plan": [[at, dataclasses.asdict(load)] for at, load in instance.load_plan],
    }


def _rng(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def dump_locked(sb: Sandbox) -> dict[str, Any]:
    """Everything worth keeping, as new JSON-ready containers (safe to encode after the lock)."""
    return {
        "version": VERSION,
        "clock": {"offset": sb.clock.offset, "frozen_at": sb.clock.frozen_at},
        "instances": [_instance(i) for i in sb.instances.values()],
        "visible": list(sb.visible),
        "storages": [
            {
                "id": s.id,
                "name": s.name,
                "cluster_id": s.cluster_id,
                "created_at": s.created_at,
                "sizes": [list(entry) for entry in s.sizes],
                "deleted_at": s.deleted_at,
            }
            for s in sb.storages.values()
        ],
        "jobs": [
            {**dataclasses.asdict(j), "states": [list(entry) for entry in j.states]}
            for j in sb.jobs.values()
        ],
        "product_prices": {
            pid: [[at, *dataclasses.astuple(p)] for at, p in timeline]
            for pid, timeline in sb.product_prices.items()
        },
        "storage_prices": {
            cid: [list(entry) for entry in timeline] for cid, timeline in sb.storage_prices.items()
        },
        "offer_overrides": [
            [cid, pid, o.available_deploy, o.inventory_state, o.available_gpus]
            for (cid, pid), o in sb.offer_overrides.items()
        ],
        "capacity_off": [list(key) for key in sorted(sb.capacity_off)],
        "capacity_creates": [[*key, n] for key, n in sorted(sb.capacity_creates.items())],
        "cash_base": sb.cash_base,
        "credit_limit": sb.credit_limit,
        "creates_by_name": dict(sb.creates_by_name),
        "rng": _rng(sb.rng),
        "id_rng": _rng(sb.id_rng),
    }


# --- from JSON -----------------------------------------------------------------------------------


def _spec(raw: dict[str, Any]) -> CreateSpec:
    if raw["product_id"] not in PRODUCTS_BY_ID:
        raise ValueError(f"unknown product {raw['product_id']}")
    return CreateSpec(
        **{
            **raw,
            "ports": tuple(Port(p["port"], p["type"]) for p in raw["ports"]),
            "envs": tuple((k, v) for k, v in raw["envs"]),
            "network_storages": tuple((sid, mount) for sid, mount in raw["network_storages"]),
        }
    )


def _load(raw: dict[str, Any]) -> Load:
    return Load(**{**raw, "gpu": tuple(raw["gpu"]), "gpu_memory": tuple(raw["gpu_memory"])})


def _load_instance(raw: dict[str, Any]) -> SandboxInstance:
    if raw["cluster_id"] not in CLUSTERS_BY_ID:
        raise ValueError(f"unknown cluster {raw['cluster_id']}")
    return SandboxInstance(
        id=raw["id"],
        spec=_spec(raw["spec"]),
        cluster_id=raw["cluster_id"],
        created_at=float(raw["created_at"]),
        ssh_password=raw["ssh_password"],
        image_broken=bool(raw["image_broken"]),
        segments=[
            Segment(at, status, error, state) for at, status, error, state in raw["segments"]
        ],
        app_boot=float(raw["app_boot"]),
        ports=tuple(Port(port, kind) for port, kind in raw["ports"]),
        rootfs_size=int(raw["rootfs_size"]),
        spot_plan=[(at, status) for at, status in raw["spot_plan"]],
        removed_at=raw["removed_at"],
        purge_at=raw["purge_at"],
        vanished=bool(raw["vanished"]),
        rootfs_plan=[(at, size) for at, size in raw["rootfs_plan"]],
        load_plan=[
            (
                at,
                Load(
                    **{**load, "gpu": tuple(load["gpu"]), "gpu_memory": tuple(load["gpu_memory"])}
                ),
            )
            for at, load in raw["load_plan"]
        ],
    )


def _set_rng(rng: random.Random, raw: list[Any]) -> None:
    version, internal, gauss = raw
    rng.setstate((version, tuple(internal), gauss))


def load_locked(sb: Sandbox, data: dict[str, Any]) -> None:
    """Replace the sandbox's world by `data` (a dump_locked answer). Raises on a bad shape
    before changing anything."""
    if data.get("version") != VERSION:
        raise ValueError(f"state version {data.get('version')!r}, expected {VERSION}")
    instances = {raw["id"]: _load_instance(raw) for raw in data["instances"]}
    visible = {iid: instances[iid] for iid in data["visible"]}
    storages = {
        raw["id"]: NetworkStorage(
            id=raw["id"],
            name=raw["name"],
            cluster_id=raw["cluster_id"],
            created_at=float(raw["created_at"]),
            sizes=[(at, size) for at, size in raw["sizes"]],
            deleted_at=raw["deleted_at"],
        )
        for raw in data["storages"]
    }
    jobs = {
        raw["id"]: Job(**{**raw, "states": [(at, state) for at, state in raw["states"]]})
        for raw in data["jobs"]
    }
    product_prices = {
        pid: [(at, Prices(price, spot, exited)) for at, price, spot, exited in timeline]
        for pid, timeline in data["product_prices"].items()
    }
    if set(product_prices) != set(PRODUCTS_BY_ID):
        raise ValueError("the prices are not those of this sandbox's products")
    storage_prices = {
        cid: [(at, price) for at, price in timeline]
        for cid, timeline in data["storage_prices"].items()
    }
    offers = {
        (cid, pid): Offer(available, state, gpus)
        for cid, pid, available, state, gpus in data["offer_overrides"]
    }
    capacity_off = {(c, p, m) for c, p, m in data["capacity_off"]}
    capacity_creates = {(c, p, m): int(n) for c, p, m, n in data.get("capacity_creates", [])}
    clock = Clock(float(data["clock"]["offset"]), data["clock"]["frozen_at"])
    # Everything read: now change the sandbox.
    sb.clock = clock
    sb.instances, sb.visible, sb.storages, sb.jobs = instances, visible, storages, jobs
    sb.product_prices, sb.storage_prices = product_prices, storage_prices
    sb.offer_overrides, sb.capacity_off = offers, capacity_off
    sb.capacity_creates = capacity_creates
    sb.cash_base, sb.credit_limit = int(data["cash_base"]), int(data["credit_limit"])
    sb.creates_by_name.clear()
    sb.creates_by_name.update(data["creates_by_name"])
    _set_rng(sb.rng, data["rng"])
    _set_rng(sb.id_rng, data["id_rng"])
    sb._purge_heap = [(i.purge_at, i.id) for i in visible.values() if i.purge_at is not None]
    heapq.heapify(sb._purge_heap)
    sb.forget_spent_locked()


# --- the file and the thread that writes it -------------------------------------------------------


class Persister:
    """Keeps `<directory>/sandbox-state.json` in step with a sandbox."""

    def __init__(self, sandbox: Sandbox, directory: str | os.PathLike[str], *, fresh: bool) -> None:
        self.sandbox = sandbox
        self.path = Path(directory) / STATE_FILE
        self.fresh = fresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = -1  # the `changes` count last written
        self._write_lock = threading.Lock()

    def load(self) -> bool:
        """Read the file into the sandbox (unless fresh); True if there was one to read."""
        if self.fresh or not self.path.exists():
            return False
        try:
            data = json.loads(self.path.read_text())
            with self.sandbox.lock:
                load_locked(self.sandbox, data)
                self._written = self.sandbox.changes
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise PersistError(
                f"cannot read the sandbox state {self.path}: {error} (--fresh starts clean)"
            ) from None
        return True

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush()  # a fresh start replaces the old file at once
        self._thread = threading.Thread(target=self._run, name="sandbox-persist", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_EVERY_S):
            if self.sandbox.changes != self._written:
                with contextlib.suppress(OSError):  # a full disk must not kill the sandbox
                    self.flush()

    def flush(self) -> None:
        with self._write_lock:
            with self.sandbox.lock:
                changes = self.sandbox.changes
                data = dump_locked(self.sandbox)
            text = json.dumps(data, separators=(",", ":"))
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
            self._written = changes
