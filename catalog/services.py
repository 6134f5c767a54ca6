"""Writes on the catalog: the sync from Novita, templates on first use, capacity memory.

The sync fetches everything first and writes afterwards, in one transaction: a Novita error
leaves the previous catalog as it was. It upserts only (a row Novita no longer lists is marked
unavailable, never deleted) and writes nothing when nothing changed, so running it twice in a
row changes nothing. Two syncs never overlap: each takes a lease on the CatalogState row by a
conditional UPDATE, and a second one finds it taken and answers "skipped".
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from prometheus_client import Counter, Histogram

from catalog.caches import NamedCache
from catalog.errors import TemplateNotFound
from catalog.models import INVENTORY_STATES, CatalogState, Product, Region, Template
from novitai.crypto import UndecryptableValue, decrypt, encrypt, json_text
from novitai.errors import UpstreamUnavailable
from novitai.novita import errors as novita_errors
from novitai.novita import types as novita
from novitai.outages import broker_guard, cache_guard

logger = logging.getLogger(__name__)

SYNC_DURATION = Histogram(
    "novitai_catalog_sync_duration_seconds",
    "Duration of catalog syncs (fetch and write).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SYNC_TOTAL = Counter(
    "novitai_catalog_sync", "Catalog syncs by outcome (success, failure, skipped).", ["outcome"]
)

# A sync holds the lease at most this long: a sync killed mid-way frees it by expiry.
SYNC_LEASE_SECONDS = 300
# A caller that needs a first catalog while another process fetches it waits this long.
FIRST_SYNC_WAIT_SECONDS = 30.0

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --- state -------------------------------------------------------------------------------------


def catalog_state() -> CatalogState:
    """The CatalogState row, created on first use."""
    state = CatalogState.objects.filter(pk=CatalogState.SINGLETON_ID).first()
    if state is None:
        CatalogState.objects.bulk_create([CatalogState()], ignore_conflicts=True)
        state = CatalogState.objects.get(pk=CatalogState.SINGLETON_ID)
    return state


@dataclass(frozen=True)
class CatalogSnapshot:
    """What readers need of the state row: the version (offer caches are keyed by it) and the
    last successful sync (freshness)."""

    version: int
    last_success_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        at = self.last_success_at
        return {"version": self.version, "last_success_at": at.isoformat() if at else None}

    @classmethod
    def from_json(cls, data: Any) -> CatalogSnapshot | None:
        """None for anything that is not what `to_json` wrote."""
        try:
            at = data["last_success_at"]
            return cls(
                version=int(data["version"]),
                last_success_at=datetime.fromisoformat(at) if at is not None else None,
            )
        except (TypeError, KeyError, ValueError):
            return None


SNAPSHOT_KEY = "catalog:state-snapshot"
SNAPSHOT_TTL_SECONDS = 5.0


_pinned: contextvars.ContextVar[CatalogSnapshot | None] = contextvars.ContextVar(
    "catalog_snapshot", default=None
)


@contextlib.contextmanager
def catalog_reading(*, now: datetime | None = None) -> Iterator[CatalogSnapshot]:
    """Catalog reads inside the block (regions, rootfs limits, offers) share one freshness
    check and one snapshot: one consistent catalog version, and no cache round trip per read.
    For short read-only work such as checking a request; not across a write of the catalog."""
    pinned = _pinned.get()
    if pinned is not None:
        yield pinned
        return
    catalog_ensure_fresh(now=now)
    token = _pinned.set(catalog_snapshot())
    try:
        yield _pinned.get() or catalog_snapshot()
    finally:
        _pinned.reset(token)


def catalog_snapshot() -> CatalogSnapshot:
    """The state row as every reader sees it, through the shared "catalog" cache: one cache read
    instead of a query on every catalog read (a create checks the catalog several times). Every
    write of the version or of the last success drops it (now and again at commit); the short
    TTL bounds what a lost invalidation could cost. Inside `catalog_reading`, the block's."""
    pinned = _pinned.get()
    if pinned is not None:
        return pinned
    cache = caches["catalog"]
    # Without the cache (Redis down) every read is the query it saves.
    snapshot = CatalogSnapshot.from_json(
        cache_guard("catalog_snapshot", lambda: cache.get(SNAPSHOT_KEY), None, cache=cache)
    )
    if snapshot is not None:
        return snapshot
    state = catalog_state()
    snapshot = CatalogSnapshot(version=state.version, last_success_at=state.last_success_at)
    payload = snapshot.to_json()
    cache_guard(
        "catalog_snapshot",
        lambda: cache.set(SNAPSHOT_KEY, payload, SNAPSHOT_TTL_SECONDS),
        None,
        cache=cache,
    )
    return snapshot


def _snapshot_delete() -> None:
    """A delete lost to an outage costs at most the snapshot's short TTL of staleness."""
    cache = caches["catalog"]
    cache_guard("catalog_snapshot", lambda: cache.delete(SNAPSHOT_KEY), None, cache=cache)


def _snapshot_invalidate() -> None:
    _snapshot_delete()
    # A reader between this delete and the commit would cache the old row again.
    transaction.on_commit(_snapshot_delete, robust=True)


def _version_bump() -> None:
    catalog_state()
    CatalogState.objects.filter(pk=CatalogState.SINGLETON_ID).update(version=F("version") + 1)
    _snapshot_invalidate()


def _lease_acquire(token: str, now: datetime) -> bool:
    catalog_state()
    taken = (
        CatalogState.objects.filter(pk=CatalogState.SINGLETON_ID)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .update(
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=SYNC_LEASE_SECONDS),
            last_attempt_at=now,
        )
    )
    return taken == 1


def _lease_release(token: str, **fields: Any) -> None:
    CatalogState.objects.filter(pk=CatalogState.SINGLETON_ID, lease_token=token).update(
        lease_token="", lease_expires_at=None, **fields
    )
    if "last_success_at" in fields:
        _snapshot_invalidate()


# --- sync --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    outcome: str  # "success" | "failure" | "skipped"
    duration_seconds: float = 0.0
    regions_created: int = 0
    regions_updated: int = 0
    regions_delisted: int = 0
    products_created: int = 0
    products_updated: int = 0
    products_unavailable: int = 0  # marked unavailable: no longer listed by Novita
    products_unchanged: int = 0
    error: str = ""

    @property
    def changed(self) -> bool:
        return any(
            (
                self.regions_created,
                self.regions_updated,
                self.regions_delisted,
                self.products_created,
                self.products_updated,
                self.products_unavailable,
            )
        )

    def counts(self) -> dict[str, int]:
        return {
            "regions_created": self.regions_created,
            "regions_updated": self.regions_updated,
            "regions_delisted": self.regions_delisted,
            "products_created": self.products_created,
            "products_updated": self.products_updated,
            "products_unavailable": self.products_unavailable,
            "products_unchanged": self.products_unchanged,
        }


_CODE_RE = re.compile(r"^\s*([^()]*?)\s*(?:\(.*\))?\s*$")


def region_code_from_name(name: str) -> str:
    """ "EU-NL-01 (Amsterdam)" -> "EU-NL-01"; "us ca 06" -> "US-CA-06"."""
    match = _CODE_RE.match(name)
    base = match.group(1) if match else name
    return re.sub(r"\s+", "-", base.strip()).upper()


def _region_fields(cluster: novita.Cluster) -> dict[str, Any]:
    return {
        "name": cluster.name,
        "gpu_types": sorted(cluster.available_gpu_types),
        "supports_network_storage": cluster.support_network_storage,
        "supports_instance_network": cluster.support_instance_network,
        "listed": True,
    }


def _product_fields(product: novita.Product) -> dict[str, Any]:
    methods = set(product.billing_methods)
    inventory = product.inventory_state.lower()
    return {
        "name": product.name,
        "cpu_per_gpu": max(product.cpu_per_gpu, 0),
        "memory_per_gpu": max(product.memory_per_gpu, 0),
        "disk_per_gpu": max(product.disk_per_gpu, 0),
        "price": max(product.price, 0),
        "spot_price": max(product.spot_price, 0),
        "exited_local_storage_price": max(product.exited_local_storage_price or 0, 0),
        "monthly_prices": [{"month": m.month, "price": m.price} for m in product.monthly_prices],
        "bills_on_demand": novita.BillingMethod.ON_DEMAND in methods,
        "bills_spot": novita.BillingMethod.SPOT in methods,
        "bills_monthly": novita.BillingMethod.MONTHLY in methods,
        "available": product.available_deploy,
        "inventory_state": inventory if inventory in INVENTORY_STATES else "",
        "available_gpu_number": product.available_gpu_number,
        "min_rootfs": max(product.min_rootfs, 0),
        "max_rootfs": max(product.max_rootfs, 0),
        "min_local_storage": max(product.min_local_storage, 0),
        "max_local_storage": max(product.max_local_storage, 0),
        "cuda_version": product.cuda_version[:16],
    }


def _differs(row: Any, fields: dict[str, Any]) -> bool:
    return any(getattr(row, name) != value for name, value in fields.items())


@dataclass(frozen=True)
class _Fetched:
    clusters: list[novita.Cluster]
    products: dict[str, list[novita.Product]]  # cluster id -> its products


def _fetch(progress: Progress) -> _Fetched:
    from novitai.novita.client import get_client

    client = get_client()
    clusters = client.list_clusters()
    progress(f"{len(clusters)} regions")
    products: dict[str, list[novita.Product]] = {}
    for cluster in clusters:
        # Availability and inventory are per region: ask each region for its own.
        products[cluster.id] = client.list_products(cluster_id=cluster.id)
        progress(f"{region_code_from_name(cluster.name)}: {len(products[cluster.id])} products")
    return _Fetched(clusters=clusters, products=products)


def _region_codes(clusters: list[novita.Cluster]) -> dict[str, str]:
    """Cluster id -> code; a code two clusters would share goes to neither: they use their ids."""
    derived = {c.id: region_code_from_name(c.name) or c.id.upper() for c in clusters}
    taken: dict[str, int] = {}
    for code in derived.values():
        taken[code] = taken.get(code, 0) + 1
    return {cid: code if taken[code] == 1 else cid.upper() for cid, code in derived.items()}


def _write_regions(fetched: _Fetched, now: datetime) -> tuple[dict[str, Region], dict[str, int]]:
    codes = _region_codes(fetched.clusters)
    existing = {r.cluster_id: r for r in Region.objects.select_for_update()}
    seen = {c.id for c in fetched.clusters}
    counts = {"created": 0, "updated": 0, "delisted": 0}
    # Regions Novita no longer lists first, so that their codes are free for the listed ones.
    for region in existing.values():
        if region.cluster_id in seen:
            continue
        fields: dict[str, Any] = {"listed": False}
        if region.code in codes.values():
            fields["code"] = region.cluster_id.upper()
        if _differs(region, fields):
            Region.objects.filter(pk=region.pk).update(**fields)
            counts["delisted"] += region.listed
    for cluster in sorted(fetched.clusters, key=lambda c: c.id):
        fields = {**_region_fields(cluster), "code": codes[cluster.id]}
        known = existing.get(cluster.id)
        if known is None:
            existing[cluster.id] = Region.objects.create(
                cluster_id=cluster.id, fetched_at=now, **fields
            )
            counts["created"] += 1
        elif _differs(known, fields):
            Region.objects.filter(pk=known.pk).update(fetched_at=now, **fields)
            counts["updated"] += 1
    return existing, counts


def _write_products(fetched: _Fetched, regions: dict[str, Region], now: datetime) -> dict[str, int]:
    existing = {
        (p.novita_id, p.region_id): p for p in Product.objects.select_for_update().order_by("pk")
    }
    counts = {"created": 0, "updated": 0, "unavailable": 0, "unchanged": 0}
    new: list[Product] = []
    changed: list[Product] = []
    seen: set[tuple[str, int]] = set()
    for cluster_id in sorted(fetched.products):
        region = regions[cluster_id]
        for upstream in fetched.products[cluster_id]:
            key = (upstream.id, region.pk)
            if key in seen:  # listed twice in one answer: the first one counts
                continue
            seen.add(key)
            fields = _product_fields(upstream)
            row = existing.get(key)
            if row is None:
                new.append(Product(novita_id=upstream.id, region=region, fetched_at=now, **fields))
            elif _differs(row, fields):
                for name, value in fields.items():
                    setattr(row, name, value)
                row.fetched_at = now
                changed.append(row)
            else:
                counts["unchanged"] += 1
    if new:
        Product.objects.bulk_create(new)
    if changed:
        Product.objects.bulk_update(changed, [*_PRODUCT_FIELDS, "fetched_at"])
    gone = [p.pk for key, p in existing.items() if key not in seen and p.available]
    if gone:
        Product.objects.filter(pk__in=gone).update(available=False)
    counts.update(created=len(new), updated=len(changed), unavailable=len(gone))
    return counts


_PRODUCT_FIELDS = [
    "name",
    "cpu_per_gpu",
    "memory_per_gpu",
    "disk_per_gpu",
    "price",
    "spot_price",
    "exited_local_storage_price",
    "monthly_prices",
    "bills_on_demand",
    "bills_spot",
    "bills_monthly",
    "available",
    "inventory_state",
    "available_gpu_number",
    "min_rootfs",
    "max_rootfs",
    "min_local_storage",
    "max_local_storage",
    "cuda_version",
]


def catalog_sync(*, progress: Progress | None = None, now: datetime | None = None) -> SyncResult:
    """Refresh regions and products from Novita. Never raises for a Novita error: the result
    says what happened, the metrics and the log too."""
    say = progress or _quiet
    now = now or timezone.now()
    token = uuid.uuid4().hex
    if not _lease_acquire(token, now):
        say("another sync is running: skipped")
        SYNC_TOTAL.labels(outcome="skipped").inc()
        logger.info("catalog sync skipped: another sync holds the lease")
        return SyncResult(outcome="skipped")

    started = time.perf_counter()
    try:
        fetched = _fetch(say)
    except novita_errors.NovitaError as exc:
        duration = time.perf_counter() - started
        _lease_release(
            token,
            last_outcome="failure",
            last_error=str(exc)[:2000],
            last_duration_seconds=duration,
        )
        SYNC_DURATION.observe(duration)
        SYNC_TOTAL.labels(outcome="failure").inc()
        logger.error("catalog sync failed; the previous catalog stays in place: %s", exc)
        say(f"failed: {exc}")
        return SyncResult(outcome="failure", duration_seconds=duration, error=str(exc))
    except BaseException:
        _lease_release(token, last_outcome="failure", last_error="unexpected error")
        SYNC_TOTAL.labels(outcome="failure").inc()
        raise

    try:
        with transaction.atomic():
            regions, region_counts = _write_regions(fetched, now)
            product_counts = _write_products(fetched, regions, now)
            result = SyncResult(
                outcome="success",
                duration_seconds=time.perf_counter() - started,
                regions_created=region_counts["created"],
                regions_updated=region_counts["updated"],
                regions_delisted=region_counts["delisted"],
                products_created=product_counts["created"],
                products_updated=product_counts["updated"],
                products_unavailable=product_counts["unavailable"],
                products_unchanged=product_counts["unchanged"],
            )
            if result.changed:
                _version_bump()
            _lease_release(
                token,
                last_outcome="success",
                last_success_at=now,
                last_error="",
                last_duration_seconds=result.duration_seconds,
                last_counts=result.counts(),
            )
    except BaseException:
        _lease_release(token, last_outcome="failure", last_error="the write failed")
        SYNC_TOTAL.labels(outcome="failure").inc()
        raise
    SYNC_DURATION.observe(result.duration_seconds)
    SYNC_TOTAL.labels(outcome="success").inc()
    logger.info("catalog sync done in %.2fs: %s", result.duration_seconds, result.counts())
    say(
        "done: "
        + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in result.counts().items())
    )
    return result


def catalog_ensure_fresh(*, now: datetime | None = None) -> None:
    """The one place that decides whether the catalog can be read as it is: readers (the
    catalog's API views, a create's checks, the provision task) call it once before they read;
    selectors never sync.

    A catalog synced within CATALOG_SYNC_INTERVAL_SECONDS is read as it is. A stale one is read as
    it is too, and a "catalog.sync" task is sent (catalog_refresh_request): a request never waits
    on Novita for a refresh. Only a catalog never synced is fetched at once (there is nothing to
    answer from; beat's first tick fetches it at start-up anyway): when that fails,
    UpstreamUnavailable.
    """
    if _pinned.get() is not None:
        return  # checked when the catalog_reading block began
    now = now or timezone.now()
    interval = timedelta(seconds=settings.CATALOG_SYNC_INTERVAL_SECONDS)
    snapshot = catalog_snapshot()
    if snapshot.last_success_at is not None and now - snapshot.last_success_at < interval:
        return
    state = catalog_state()  # the snapshot may be a few seconds old
    if state.last_success_at is None:
        _first_sync(now)
    elif now - state.last_success_at >= interval:
        catalog_refresh_request()


def _first_sync(now: datetime) -> None:
    """The first catalog, fetched now, or waited for while another process fetches it."""
    result = catalog_sync(now=now)
    if result.outcome == "success":
        return
    if result.outcome == "skipped":
        # Another process is fetching the first catalog: wait for it.
        deadline = time.monotonic() + FIRST_SYNC_WAIT_SECONDS
        while time.monotonic() < deadline:
            state = catalog_state()
            if state.last_success_at is not None:
                return
            if state.lease_expires_at is None:
                break
            time.sleep(0.2)
    raise UpstreamUnavailable(
        "The product catalog could not be fetched from Novita; try again shortly."
    )


# A stale catalog asks for one sync at most this often (a Novita that keeps failing is not asked
# again by every request; beat's own tick retries too).
REFRESH_REQUEST_SECONDS = 60
REFRESH_REQUEST_KEY = "catalog:refresh-requested"


def catalog_refresh_request() -> bool:
    """Sends a "catalog.sync" task (after commit), unless one was sent in the last
    REFRESH_REQUEST_SECONDS. True when sent. Without the cache it is sent; without the broker it
    is not (beat's next tick syncs)."""
    from novitai.celery import app

    cache = caches["catalog"]
    claimed = cache_guard(
        "catalog_refresh",
        lambda: cache.add(REFRESH_REQUEST_KEY, 1, timeout=REFRESH_REQUEST_SECONDS),
        True,
        cache=cache,
    )
    if not claimed:
        return False
    logger.info("the catalog is stale: a sync is asked for")
    transaction.on_commit(
        lambda: broker_guard("catalog_refresh", lambda: app.send_task("catalog.sync")),
        robust=True,
    )
    return True


# --- capacity memory ---------------------------------------------------------------------------


def offer_capacity_failed(
    *, novita_product_id: str, cluster_id: str, now: datetime | None = None
) -> None:
    """Remember that a create of this product in this region failed for lack of capacity: the
    offer is skipped for CATALOG_CAPACITY_MEMORY_SECONDS (and cached offer lists are dropped)."""
    now = now or timezone.now()
    until = now + timedelta(seconds=settings.CATALOG_CAPACITY_MEMORY_SECONDS)
    with transaction.atomic():
        updated = Product.objects.filter(
            novita_id=novita_product_id, region__cluster_id=cluster_id
        ).update(capacity_failed_until=until)
        _version_bump()
    if not updated:
        logger.warning("capacity failure for unknown offer %s in %s", novita_product_id, cluster_id)


# --- templates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateConfig:
    """What an instance is created from. `image_auth_id` is a registry-auth id, never a secret."""

    id: str
    name: str
    image: str
    image_auth_id: str
    start_command: str
    rootfs_size: int
    ports: tuple[novita.PortSpec, ...]
    envs: tuple[novita.EnvVar, ...]
    entrypoint: str = ""
    min_cuda_version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "image_auth_id": self.image_auth_id,
            "start_command": self.start_command,
            "rootfs_size": self.rootfs_size,
            "ports": [{"port": p.port, "type": p.type} for p in self.ports],
            # Env values may hold tokens: encrypted in the cache too (ENCRYPTION_KEYS).
            "envs": encrypt(json_text([{"key": e.key, "value": e.value} for e in self.envs])),
            "entrypoint": self.entrypoint,
            "min_cuda_version": self.min_cuda_version,
        }

    @classmethod
    def from_json(cls, data: Any) -> TemplateConfig | None:
        """None for anything that is not what `to_json` wrote."""
        try:
            envs = json.loads(decrypt(data["envs"]))
            return cls(
                id=str(data["id"]),
                name=str(data["name"]),
                image=str(data["image"]),
                image_auth_id=str(data["image_auth_id"]),
                start_command=str(data["start_command"]),
                rootfs_size=int(data["rootfs_size"]),
                ports=tuple(
                    novita.PortSpec(port=int(p["port"]), type=str(p["type"])) for p in data["ports"]
                ),
                envs=tuple(novita.EnvVar(key=str(e["key"]), value=str(e["value"])) for e in envs),
                entrypoint=str(data["entrypoint"]),
                min_cuda_version=str(data["min_cuda_version"]),
            )
        except (TypeError, KeyError, ValueError, AttributeError, UndecryptableValue):
            return None


_TEMPLATE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _template_config(row: Template) -> TemplateConfig:
    return TemplateConfig(
        id=row.novita_id,
        name=row.name,
        image=row.image,
        image_auth_id=row.image_auth_id,
        start_command=row.start_command,
        rootfs_size=row.rootfs_size,
        ports=tuple(novita.PortSpec(port=p["port"], type=p["type"]) for p in row.ports),
        envs=tuple(novita.EnvVar(key=e["key"], value=e["value"]) for e in row.envs),
        entrypoint=row.entrypoint,
        min_cuda_version=row.min_cuda_version,
    )


def _template_store(upstream: novita.Template, now: datetime) -> Template:
    fields = {
        "name": upstream.name,
        "image": upstream.image,
        "image_auth_id": upstream.image_auth_id,
        "start_command": upstream.start_command,
        "rootfs_size": max(upstream.rootfs_size, 0),
        "ports": [{"port": p.port, "type": p.type} for p in upstream.ports],
        "envs": [{"key": e.key, "value": e.value} for e in upstream.envs],
        "channel": upstream.channel,
        "entrypoint": upstream.entrypoint,
        "min_cuda_version": upstream.min_cuda_version[:16],
        "fetched_at": now,
    }
    # An upsert: two processes fetching the same template at once both succeed.
    Template.objects.bulk_create(
        [Template(novita_id=upstream.id, **fields)],
        update_conflicts=True,
        unique_fields=["novita_id"],
        update_fields=list(fields),
    )
    return Template.objects.get(novita_id=upstream.id)


def template_get(*, template_id: str, now: datetime | None = None) -> TemplateConfig:
    """The template's configuration: from the "templates" cache, else the database row while
    younger than CATALOG_TEMPLATE_TTL_SECONDS, else fetched from Novita (and stored)."""
    now = now or timezone.now()
    if not _TEMPLATE_ID_RE.match(template_id):
        raise TemplateNotFound(f"No template {template_id!r}.")
    ttl = settings.CATALOG_TEMPLATE_TTL_SECONDS
    cache = NamedCache("templates")
    key = f"template:{template_id}"
    cached = TemplateConfig.from_json(cache.get(key, now=now.timestamp()))
    if cached is not None:
        return cached

    row = Template.objects.filter(novita_id=template_id).first()
    age = (now - row.fetched_at).total_seconds() if row is not None else None
    if row is None or age is None or not 0 <= age < ttl:
        row = _template_fetch(template_id, now)
        age = 0.0
    config = _template_config(row)
    cache.set(key, config.to_json(), ttl - age, now=now.timestamp())
    return config


def _template_fetch(template_id: str, now: datetime) -> Template:
    from novitai.novita.client import get_client

    try:
        upstream = get_client().get_template(template_id)
    except (novita_errors.MalformedResponse, novita_errors.QuotaExceeded) as exc:
        raise UpstreamUnavailable(f"The template could not be fetched from Novita: {exc}") from exc
    except (novita_errors.NotFound, novita_errors.RejectedInput) as exc:
        Template.objects.filter(novita_id=template_id).delete()
        raise TemplateNotFound(f"Novita has no template {template_id!r}.") from exc
    except novita_errors.NovitaError as exc:
        raise UpstreamUnavailable(f"The template could not be fetched from Novita: {exc}") from exc
    return _template_store(upstream, now)
