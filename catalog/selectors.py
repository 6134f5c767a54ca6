"""Reads on the catalog: regions, products, and offer selection (docs/architecture.md,
"Provisioning").

Reads only: every selector reads the stored catalog and none syncs. Whether the catalog may be
read as it is, is decided once per request or task by its caller (`catalog_ensure_fresh`, or a
`catalog_reading` block). Selection's answers are cached in the "catalog" cache for
CATALOG_OFFER_TTL_SECONDS under the catalog version, which a sync that changed something and
every capacity failure move on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.cache import caches
from django.db.models import Q, QuerySet
from django.utils import timezone

from catalog.caches import NamedCache
from catalog.errors import NoOfferAvailable, UnknownProduct, UnknownRegion
from catalog.models import BillingMode, Product, Region
from catalog.services import catalog_snapshot
from novitai.errors import ValidationFailed
from novitai.novita.types import PRICE_UNITS_PER_USD, price_to_usd
from novitai.outages import cache_guard

MAX_GPU_NUM = 8
# Ties on price: more inventory first.
INVENTORY_RANK = {"high": 0, "normal": 1, "low": 2}
_UNKNOWN_INVENTORY_RANK = 3


# --- regions ------------------------------------------------------------------------------------


def catalog_last_sync_at() -> datetime | None:
    """When the catalog was last synced successfully (None: never)."""
    return catalog_snapshot().last_success_at


def region_list() -> QuerySet[Region]:
    return Region.objects.order_by("code")


T = TypeVar("T")


def _per_version(name: str, build: Callable[[], T]) -> T:
    """A read of catalog rows, kept in the "catalog" cache under the catalog version: a sync
    that changed something (or a capacity failure) moves the version on, so these never outlive
    the rows they were read from. Every create request checks regions and products, and this
    spares it the queries. `build` answers JSON data (lists, not tuples): what the cache holds,
    so that a hit and a miss answer alike."""
    key = f"rows:{name}:v{catalog_snapshot().version}"
    cache = caches["catalog"]
    stored = cache_guard("catalog_rows", lambda: cache.get(key), None, cache=cache)
    if isinstance(stored, list) and len(stored) == 1:  # wrapped: a falsy value still hits
        return cast(T, stored[0])
    value = build()
    cache_guard(
        "catalog_rows",
        lambda: cache.set(key, [value], settings.CATALOG_SYNC_INTERVAL_SECONDS),
        None,
        cache=cache,
    )
    return value


_REGION_FIELDS = [f.attname for f in Region._meta.concrete_fields]


def _region_table() -> dict[str, Any]:
    """{"rows": {pk: the region's column values}, "index": {key: pk}}: every region under its
    cluster id and its code, case-folded (a code wins a clash)."""
    rows = list(Region.objects.order_by("code").values(*_REGION_FIELDS))
    index = {row["cluster_id"].casefold(): row["id"] for row in rows}
    index.update({row["code"].casefold(): row["id"] for row in rows})
    for row in rows:
        row["fetched_at"] = row["fetched_at"].isoformat()
    return {"rows": {str(row["id"]): row for row in rows}, "index": index}


def _region_of(row: dict[str, Any]) -> Region:
    """The Region a `_region_table` row was read from, as if loaded from the database."""
    values = {**row, "fetched_at": datetime.fromisoformat(row["fetched_at"])}
    return Region.from_db(None, _REGION_FIELDS, [values[name] for name in _REGION_FIELDS])


def region_resolve(value: str, *, field: str = "region") -> Region:
    """A region by its code ("EU-NL-01") or its Novita cluster id, case-insensitive."""
    table = _per_version("regions", _region_table)
    pk = table["index"].get(value.strip().casefold()) if value.strip() else None
    if pk is None:
        known = sorted({row["code"] for row in table["rows"].values() if row["listed"]})
        raise UnknownRegion(value, field=field, known=known)
    return _region_of(table["rows"][str(pk)])


def _rootfs_table() -> dict[str, list[list[Any]]]:
    table: dict[str, list[list[Any]]] = {}
    rows = Product.objects.values_list("name", "min_rootfs", "max_rootfs").distinct()
    for name, low, high in rows.order_by("name", "min_rootfs", "max_rootfs"):
        table.setdefault(name.casefold(), []).append([name, low, high])
    return table


def product_rootfs_limits(names: Sequence[str]) -> list[tuple[str, int, int]]:
    """(name, min GB, max GB) of every product named exactly (case-insensitive) one of
    `names`, in any region, available or not; max 0 means no upper limit."""
    table = _per_version("rootfs", _rootfs_table)
    return [
        (str(name), int(low), int(high))
        for wanted in names
        for name, low, high in table.get(wanted.strip().casefold(), [])
    ]


def region_fallback_order() -> list[int]:
    """Region pks in CATALOG_REGION_FALLBACK_ORDER order; entries naming no region are skipped."""
    order: list[int] = []
    index = _per_version("regions", _region_table)["index"]
    for value in settings.CATALOG_REGION_FALLBACK_ORDER:
        pk = index.get(str(value).strip().casefold())
        if pk is not None and pk not in order:
            order.append(pk)
    return order


# --- products -----------------------------------------------------------------------------------


def _price_field(billing_mode: str) -> str:
    return "spot_price" if billing_mode == BillingMode.SPOT else "price"


def _sold_as(billing_mode: str) -> Q:
    if billing_mode == BillingMode.SPOT:
        return Q(bills_spot=True, spot_price__gt=0)
    return Q(bills_on_demand=True, price__gt=0)


def max_units_per_gpu(max_price_per_hour: Decimal, gpu_num: int) -> int:
    """The highest per-GPU price (1/100000 USD) whose total for `gpu_num` GPUs is within the
    maximum hourly price."""
    per_gpu = max_price_per_hour * PRICE_UNITS_PER_USD / gpu_num
    return int(per_gpu.to_integral_value(rounding=ROUND_FLOOR))


def product_list(
    *,
    name: str | None = None,
    region: Region | None = None,
    billing_mode: str | None = None,
    available: bool | None = None,
    max_price_per_hour: Decimal | None = None,
    gpu_num: int = 1,
) -> QuerySet[Product]:
    """Products, cheapest first by the price of `billing_mode` (on demand when not given).

    With a billing mode, only products sold that way (at a price above 0); `max_price_per_hour`
    bounds the price of `gpu_num` GPUs; `name` matches a part of the name, case-insensitive.
    """
    mode = billing_mode or BillingMode.ON_DEMAND
    products = Product.objects.select_related("region")
    if name:
        products = products.filter(name__icontains=name.strip())
    if region is not None:
        products = products.filter(region=region)
    if billing_mode is not None or max_price_per_hour is not None:
        products = products.filter(_sold_as(mode))
    if available is not None:
        products = products.filter(available=available)
    if gpu_num > 1:
        products = products.filter(
            Q(available_gpu_number__isnull=True) | Q(available_gpu_number__gte=gpu_num)
        )
    if max_price_per_hour is not None:
        bound = max_units_per_gpu(max_price_per_hour, gpu_num)
        products = products.filter(**{f"{_price_field(mode)}__lte": bound})
    return products.order_by(_price_field(mode), "name", "region__code", "novita_id")


def usd_text(amount: Decimal) -> str:
    """Exact, with at least cents: 0.4 -> "0.40", 0.12345 -> "0.12345"."""
    cents = amount.quantize(Decimal("0.01"))
    return str(cents if cents == amount else amount.normalize())


# --- offer selection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """A product in a region that can be asked for, priced by the requested billing mode."""

    product_pk: int
    novita_product_id: str
    product_name: str
    region_code: str
    cluster_id: str
    billing_mode: str  # "on_demand" | "spot"
    gpu_num: int
    price_per_gpu_hour: Decimal  # USD
    price_per_hour: Decimal  # USD, for gpu_num GPUs
    inventory_state: str
    cpu_per_gpu: int
    memory_per_gpu: int
    min_rootfs: int
    max_rootfs: int
    cuda_version: str = ""  # "" when Novita's product does not say


def cuda_at_least(version: str, minimum: str) -> bool:
    """Whether "12.4" >= "12.1"; compared as numbers, part by part. A version that is not one (or an
    empty minimum) says nothing against the product."""
    if not version or not minimum:
        return True
    try:
        have = tuple(int(part) for part in version.strip().split("."))
        need = tuple(int(part) for part in minimum.strip().split("."))
    except ValueError:
        return True
    return have >= need


class RejectReason:
    PRODUCT_NOT_FOUND = "product_not_found"
    UNAVAILABLE = "unavailable"
    NOT_ENOUGH_GPUS = "not_enough_gpus"
    BILLING_MODE_UNSUPPORTED = "billing_mode_unsupported"
    ROOTFS_OUT_OF_RANGE = "rootfs_out_of_range"
    CAPACITY_RECENTLY_FAILED = "capacity_recently_failed"
    OVER_MAX_PRICE = "over_max_price"
    OTHER_CLUSTER = "other_cluster"
    CUDA_TOO_OLD = "cuda_too_old"


@dataclass(frozen=True)
class Rejection:
    """A candidate left out, and why. `region_code` is "" for a name no product has."""

    product_name: str
    region_code: str
    reason: str  # a RejectReason
    message: str
    novita_product_id: str = ""
    cluster_id: str = ""


@dataclass(frozen=True)
class OfferSelection:
    offers: tuple[Offer, ...]  # best first
    rejected: tuple[Rejection, ...]  # in region order, like the offers

    @property
    def best(self) -> Offer | None:
        return self.offers[0] if self.offers else None

    def to_json(self) -> dict[str, Any]:
        """What the "catalog" cache keeps (prices as exact decimal strings)."""
        return {
            "offers": [
                {
                    **asdict(o),
                    "price_per_gpu_hour": str(o.price_per_gpu_hour),
                    "price_per_hour": str(o.price_per_hour),
                }
                for o in self.offers
            ],
            "rejected": [asdict(r) for r in self.rejected],
        }

    @classmethod
    def from_json(cls, data: Any) -> OfferSelection | None:
        """None for anything that is not what `to_json` wrote."""
        try:
            offers = tuple(
                Offer(
                    **{
                        **o,
                        "price_per_gpu_hour": Decimal(o["price_per_gpu_hour"]),
                        "price_per_hour": Decimal(o["price_per_hour"]),
                    }
                )
                for o in data["offers"]
            )
            return cls(offers=offers, rejected=tuple(Rejection(**r) for r in data["rejected"]))
        except (TypeError, KeyError, ValueError, ArithmeticError):
            return None

    def rejected_details(self) -> list[dict[str, str]]:
        return [
            {
                "product_name": r.product_name,
                "region_code": r.region_code,
                "reason": r.reason,
                "message": r.message,
            }
            for r in self.rejected
        ]


def _normalise_name(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip()).casefold()


def _validate(
    *,
    product_names: Sequence[str],
    gpu_num: int,
    billing_mode: str,
    max_price_per_hour: Decimal | None,
    rootfs_size: int | None,
) -> list[str]:
    errors: dict[str, list[str]] = {}
    names: list[str] = []
    for raw in product_names if not isinstance(product_names, str) else [product_names]:
        if not isinstance(raw, str) or not raw.strip():
            errors["product_names"] = ["Product names must be non-empty strings."]
            break
        if _normalise_name(raw) not in {_normalise_name(n) for n in names}:
            names.append(re.sub(r"\s+", " ", raw.strip()))
    if not names and "product_names" not in errors:
        errors["product_names"] = ["Name at least one product."]
    if isinstance(gpu_num, bool) or not isinstance(gpu_num, int) or not 1 <= gpu_num <= 8:
        errors["gpu_num"] = [f"Ask for 1 to {MAX_GPU_NUM} GPUs."]
    if billing_mode not in BillingMode.values:
        errors["billing_mode"] = [f"Use one of: {', '.join(BillingMode.values)}."]
    if max_price_per_hour is not None and (
        not isinstance(max_price_per_hour, Decimal)
        or not max_price_per_hour.is_finite()
        or max_price_per_hour < 0
    ):
        errors["max_price_per_hour"] = ["A price in USD per hour, 0 or more."]
    if rootfs_size is not None and (
        isinstance(rootfs_size, bool) or not isinstance(rootfs_size, int) or rootfs_size < 1
    ):
        errors["rootfs_size"] = ["A size in GB, 1 or more."]
    if errors:
        raise ValidationFailed(details=errors)
    return names


def _rejection(product: Product, reason: str, message: str) -> Rejection:
    return Rejection(
        product_name=product.name,
        region_code=product.region.code,
        reason=reason,
        message=message,
        novita_product_id=product.novita_id,
        cluster_id=product.region.cluster_id,
    )


def _judge_placement(
    product: Product, *, cluster_id: str | None, min_cuda_version: str
) -> Rejection | None:
    """The request's placement rules: one cluster only (a network volume's), a CUDA version at
    least the template's (where the product says which it has)."""
    where = f"{product.name} in {product.region.code}"
    if cluster_id is not None and product.region.cluster_id != cluster_id:
        return _rejection(
            product,
            RejectReason.OTHER_CLUSTER,
            f"{where} is not in the cluster of the requested volume(s).",
        )
    if not cuda_at_least(product.cuda_version, min_cuda_version):
        return _rejection(
            product,
            RejectReason.CUDA_TOO_OLD,
            f"{where} has CUDA {product.cuda_version}; the template needs {min_cuda_version}.",
        )
    return None


def _judge(  # noqa: PLR0911, PLR0913 - one return per rejection reason, in order
    product: Product,
    *,
    gpu_num: int,
    billing_mode: str,
    max_price_per_hour: Decimal | None,
    rootfs_size: int | None,
    now: datetime,
    cluster_id: str | None = None,
    min_cuda_version: str = "",
    ignore_capacity_memory: bool = False,
) -> Offer | Rejection:
    where = f"{product.name} in {product.region.code}"
    placement = _judge_placement(product, cluster_id=cluster_id, min_cuda_version=min_cuda_version)
    if placement is not None:
        return placement
    if not product.available or not product.region.listed:
        state = f" (inventory {product.inventory_state})" if product.inventory_state else ""
        return _rejection(
            product, RejectReason.UNAVAILABLE, f"{where} is not available to deploy{state}."
        )
    if product.available_gpu_number is not None and product.available_gpu_number < gpu_num:
        return _rejection(
            product,
            RejectReason.NOT_ENOUGH_GPUS,
            f"{where} has {product.available_gpu_number} GPUs available; {gpu_num} asked for.",
        )
    units = product.price_units(billing_mode)
    if units <= 0:
        how = "as spot" if billing_mode == BillingMode.SPOT else "on demand"
        return _rejection(
            product, RejectReason.BILLING_MODE_UNSUPPORTED, f"{where} is not sold {how}."
        )
    if rootfs_size is not None:
        low = product.min_rootfs
        high = product.max_rootfs or None
        if rootfs_size < low or (high is not None and rootfs_size > high):
            bounds = f"{low}-{high}" if high is not None else f"at least {low}"
            return _rejection(
                product,
                RejectReason.ROOTFS_OUT_OF_RANGE,
                f"{where} takes a root disk of {bounds} GB; {rootfs_size} GB asked for.",
            )
    if (
        not ignore_capacity_memory
        and product.capacity_failed_until is not None
        and product.capacity_failed_until > now
    ):
        return _rejection(
            product,
            RejectReason.CAPACITY_RECENTLY_FAILED,
            f"{where} had no capacity at the last attempt; skipped until "
            f"{product.capacity_failed_until.isoformat().replace('+00:00', 'Z')}.",
        )
    per_gpu = price_to_usd(units)
    total = price_to_usd(units * gpu_num)
    if max_price_per_hour is not None and total > max_price_per_hour:
        return _rejection(
            product,
            RejectReason.OVER_MAX_PRICE,
            f"{where} costs {usd_text(total)} USD/h for {gpu_num} GPU(s), over the maximum "
            f"of {usd_text(max_price_per_hour)} USD/h.",
        )
    return Offer(
        product_pk=product.pk,
        novita_product_id=product.novita_id,
        product_name=product.name,
        region_code=product.region.code,
        cluster_id=product.region.cluster_id,
        billing_mode=billing_mode,
        gpu_num=gpu_num,
        price_per_gpu_hour=per_gpu,
        price_per_hour=total,
        inventory_state=product.inventory_state,
        cpu_per_gpu=product.cpu_per_gpu,
        memory_per_gpu=product.memory_per_gpu,
        min_rootfs=product.min_rootfs,
        max_rootfs=product.max_rootfs,
        cuda_version=product.cuda_version,
    )


def _compute(  # noqa: PLR0913 - the request's parts, keyword-only
    *,
    names: list[str],
    gpu_num: int,
    region: Region | None,
    billing_mode: str,
    max_price_per_hour: Decimal | None,
    rootfs_size: int | None,
    now: datetime,
    cluster_id: str | None = None,
    min_cuda_version: str = "",
    ignore_capacity_memory: bool = False,
) -> tuple[OfferSelection, datetime | None]:
    """The selection, and when it may change by itself (a capacity memory running out)."""
    fallback = region_fallback_order()
    region_rank = {pk: i + 1 for i, pk in enumerate(fallback)}
    if region is not None:
        region_rank[region.pk] = 0
    other_regions = len(fallback) + 1
    name_rank = {_normalise_name(n): i for i, n in enumerate(names)}

    candidates = list(
        Product.objects.select_related("region").filter(
            functools.reduce(operator.or_, (Q(name__iexact=n) for n in names))
        )
    )
    offers: list[tuple[tuple[object, ...], Offer]] = []
    rejected: list[tuple[tuple[object, ...], Rejection]] = [
        (
            (-1, i, "", ""),
            Rejection(
                product_name=n,
                region_code="",
                reason=RejectReason.PRODUCT_NOT_FOUND,
                message=f"No product is named {n!r}.",
            ),
        )
        for i, n in enumerate(names)
        if not any(_normalise_name(p.name) == _normalise_name(n) for p in candidates)
    ]
    changes_at: datetime | None = None
    for product in candidates:
        rank = region_rank.get(product.region_id, other_regions)
        nth = name_rank.get(_normalise_name(product.name), len(names))
        verdict = _judge(
            product,
            gpu_num=gpu_num,
            billing_mode=billing_mode,
            max_price_per_hour=max_price_per_hour,
            rootfs_size=rootfs_size,
            now=now,
            cluster_id=cluster_id,
            min_cuda_version=min_cuda_version,
            ignore_capacity_memory=ignore_capacity_memory,
        )
        if isinstance(verdict, Offer):
            key = (
                rank,
                product.price_units(billing_mode),
                nth,
                INVENTORY_RANK.get(product.inventory_state, _UNKNOWN_INVENTORY_RANK),
                -product.memory_per_gpu,
                -product.cpu_per_gpu,
                product.region.code,
                product.novita_id,
            )
            offers.append((key, verdict))
        else:
            if verdict.reason == RejectReason.CAPACITY_RECENTLY_FAILED:
                until = product.capacity_failed_until
                if until is not None and (changes_at is None or until < changes_at):
                    changes_at = until
            rejected.append(((rank, nth, product.region.code, product.novita_id), verdict))
    selection = OfferSelection(
        offers=tuple(offer for _, offer in sorted(offers, key=lambda pair: pair[0])),
        rejected=tuple(r for _, r in sorted(rejected, key=lambda pair: pair[0])),
    )
    return selection, changes_at


def offers_select(  # noqa: PLR0913 - the request's parts, keyword-only
    *,
    product_names: Sequence[str],
    gpu_num: int,
    region: str | None,
    billing_mode: str,
    max_price_per_hour: Decimal | None,
    rootfs_size: int | None,
    now: datetime | None = None,
    cluster_id: str | None = None,
    min_cuda_version: str = "",
    ignore_capacity_memory: bool = False,
) -> OfferSelection:
    """The offers for a request, best first, and every candidate left out with its reason.

    Rules, in order:
    - Candidates are the products named exactly (case-insensitive) in `product_names`, in every
      region. A product is offered only when it is available, has `gpu_num` GPUs free (when
      Novita says how many), is sold in `billing_mode` at a price above 0, takes a root disk of
      `rootfs_size` GB (within its min/max), did not fail for lack of capacity in the last
      CATALOG_CAPACITY_MEMORY_SECONDS (unless `ignore_capacity_memory`: an instance waiting for
      capacity tries every acceptable offer each time), and costs at most `max_price_per_hour`
      for all its GPUs.
    - Order: the preferred `region` first, then the regions of CATALOG_REGION_FALLBACK_ORDER in
      that order, then every other region. Within each of these steps the cheapest offer first
      (spot price for "spot", on-demand price otherwise), across all the acceptable names: an
      earlier name wins only a price tie. Then more inventory (high > normal > low > none or
      unknown), then more memory per GPU, then more CPU per GPU.
    - `cluster_id`: only that cluster (a network volume's); `min_cuda_version`: a product whose
      CUDA version Novita gives must have at least that one (a product that does not say is
      kept).
    """
    names = _validate(
        product_names=product_names,
        gpu_num=gpu_num,
        billing_mode=billing_mode,
        max_price_per_hour=max_price_per_hour,
        rootfs_size=rootfs_size,
    )
    now = now or timezone.now()
    preferred = region_resolve(region) if region is not None and region.strip() else None

    version = catalog_snapshot().version
    fingerprint = json.dumps(
        [
            version,
            [_normalise_name(n) for n in names],
            gpu_num,
            preferred.pk if preferred else None,
            billing_mode,
            str(max_price_per_hour) if max_price_per_hour is not None else None,
            rootfs_size,
            list(settings.CATALOG_REGION_FALLBACK_ORDER),
            cluster_id,
            min_cuda_version,
            ignore_capacity_memory,
        ]
    )
    key = "offers:" + hashlib.sha256(fingerprint.encode()).hexdigest()
    cache = NamedCache("catalog")
    cached = OfferSelection.from_json(cache.get(key, now=now.timestamp()))
    if cached is not None:
        return cached

    selection, changes_at = _compute(
        names=names,
        gpu_num=gpu_num,
        region=preferred,
        billing_mode=billing_mode,
        max_price_per_hour=max_price_per_hour,
        rootfs_size=rootfs_size,
        now=now,
        cluster_id=cluster_id,
        min_cuda_version=min_cuda_version,
        ignore_capacity_memory=ignore_capacity_memory,
    )
    ttl = float(settings.CATALOG_OFFER_TTL_SECONDS)
    if changes_at is not None:
        ttl = min(ttl, (changes_at - now).total_seconds())
    if ttl > 0:
        cache.set(key, selection.to_json(), ttl, now=now.timestamp())
    return selection


def offers_require(  # noqa: PLR0913 - the request's parts, keyword-only
    *,
    product_names: Sequence[str],
    gpu_num: int,
    region: str | None,
    billing_mode: str,
    max_price_per_hour: Decimal | None,
    rootfs_size: int | None,
    now: datetime | None = None,
    cluster_id: str | None = None,
) -> OfferSelection:
    """offers_select, with at least one offer: else UnknownProduct (no product has any of the
    names) or NoOfferAvailable (with every candidate's reason in the details)."""
    selection = offers_select(
        product_names=product_names,
        gpu_num=gpu_num,
        region=region,
        billing_mode=billing_mode,
        max_price_per_hour=max_price_per_hour,
        rootfs_size=rootfs_size,
        now=now,
        cluster_id=cluster_id,
    )
    if selection.offers:
        return selection
    names = [product_names] if isinstance(product_names, str) else list(product_names)
    if all(r.reason == RejectReason.PRODUCT_NOT_FOUND for r in selection.rejected):
        raise UnknownProduct(
            f"No product is named {' or '.join(repr(n) for n in names)}.",
            details={"product_names": names},
        )
    raise NoOfferAvailable(
        f"No offer for {gpu_num} x {' or '.join(names)} ({billing_mode}).",
        details={"rejected": selection.rejected_details()},
    )


def product_storage_price(*, product_pk: int) -> int:
    """A product's price for a stopped instance's local disk, 1/100000 USD per GB per day (0
    when unknown)."""
    price = Product.objects.filter(pk=product_pk).values_list(
        "exited_local_storage_price", flat=True
    )
    return next(iter(price), 0)
