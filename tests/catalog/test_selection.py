"""Offer selection, rule by rule, on catalog rows built in the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from catalog.caches import NamedCache
from catalog.errors import NoOfferAvailable, UnknownProduct, UnknownRegion
from catalog.models import Product, Region
from catalog.selectors import (
    Offer,
    cuda_at_least,
    offers_require,
    offers_select,
    region_resolve,
)
from catalog.services import offer_capacity_failed
from novitai.errors import ValidationFailed
from tests.catalog.factories import ProductFactory

D = Decimal
DEFAULT_REQUEST: dict[str, Any] = {
    "product_names": ["RTX 4090"],
    "gpu_num": 1,
    "region": None,
    "billing_mode": "on_demand",
    "max_price_per_hour": None,
    "rootfs_size": None,
}


def row(name: str, region: str, price: int = 30000, spot: int = 15000, **extra: Any) -> dict:
    return {"name": name, "region": region, "price": price, "spot_price": spot, **extra}


def build(regions: dict[str, Region], rows: list[dict], now: datetime) -> None:
    for spec in rows:
        spec = dict(spec)
        region = regions[spec.pop("region")]
        failed_in = spec.pop("capacity_failed_in", None)
        if failed_in is not None:
            spec["capacity_failed_until"] = now + timedelta(seconds=failed_in)
        ProductFactory.create(region=region, **spec)


FIVE = [
    row("RTX 4090", "EU-NL-01", 34000),
    row("RTX 4090", "EU-DE-01", 36000),
    row("RTX 4090", "US-TX-02", 30000),
    row("RTX 4090", "US-CA-06", 29000),
    row("RTX 4090", "AS-JP-03", 28000),
]

CASES = [
    # --- region order: preferred, then the fallback setting, then the rest by price ---
    pytest.param(
        FIVE,
        {"region": "EU-NL-01", "fallback": ["EU-DE-01", "US-TX-02"]},
        [
            ("RTX 4090", "EU-NL-01", D("0.34")),
            ("RTX 4090", "EU-DE-01", D("0.36")),
            ("RTX 4090", "US-TX-02", D("0.30")),
            ("RTX 4090", "AS-JP-03", D("0.28")),
            ("RTX 4090", "US-CA-06", D("0.29")),
        ],
        [],
        id="preferred-then-fallback-then-others-by-price",
    ),
    pytest.param(
        FIVE,
        {"fallback": ["US-TX-02", "EU-DE-01"]},
        [
            ("RTX 4090", "US-TX-02", D("0.30")),
            ("RTX 4090", "EU-DE-01", D("0.36")),
            ("RTX 4090", "AS-JP-03", D("0.28")),
            ("RTX 4090", "US-CA-06", D("0.29")),
            ("RTX 4090", "EU-NL-01", D("0.34")),
        ],
        [],
        id="no-preferred-region-fallback-first",
    ),
    pytest.param(
        FIVE,
        {"region": "US-TX-02", "fallback": ["EU-DE-01", "US-TX-02"]},
        [
            ("RTX 4090", "US-TX-02", D("0.30")),
            ("RTX 4090", "EU-DE-01", D("0.36")),
            ("RTX 4090", "AS-JP-03", D("0.28")),
            ("RTX 4090", "US-CA-06", D("0.29")),
            ("RTX 4090", "EU-NL-01", D("0.34")),
        ],
        [],
        id="preferred-region-also-in-fallback",
    ),
    pytest.param(
        FIVE,
        {"region": "us-ca-06", "fallback": ["eu-de-01", "MARS-01"]},
        [
            ("RTX 4090", "US-CA-06", D("0.29")),
            ("RTX 4090", "EU-DE-01", D("0.36")),
            ("RTX 4090", "AS-JP-03", D("0.28")),
            ("RTX 4090", "US-TX-02", D("0.30")),
            ("RTX 4090", "EU-NL-01", D("0.34")),
        ],
        [],
        id="regions-by-cluster-id-unknown-fallback-ignored",
    ),
    pytest.param(
        FIVE,
        {},
        [
            ("RTX 4090", "AS-JP-03", D("0.28")),
            ("RTX 4090", "US-CA-06", D("0.29")),
            ("RTX 4090", "US-TX-02", D("0.30")),
            ("RTX 4090", "EU-NL-01", D("0.34")),
            ("RTX 4090", "EU-DE-01", D("0.36")),
        ],
        [],
        id="no-region-order-all-by-price",
    ),
    # --- billing mode ---
    pytest.param(
        [row("RTX 4090", "EU-NL-01", 30000, 20000), row("RTX 4090", "EU-DE-01", 40000, 10000)],
        {"billing_mode": "spot"},
        [("RTX 4090", "EU-DE-01", D("0.10")), ("RTX 4090", "EU-NL-01", D("0.20"))],
        [],
        id="spot-priced-by-spot-price",
    ),
    pytest.param(
        [row("RTX 4090", "EU-NL-01", 30000, 20000), row("RTX 4090", "EU-DE-01", 40000, 10000)],
        {"billing_mode": "on_demand"},
        [("RTX 4090", "EU-NL-01", D("0.30")), ("RTX 4090", "EU-DE-01", D("0.40"))],
        [],
        id="on-demand-priced-by-on-demand-price",
    ),
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", spot=0, bills_spot=False),
            row("RTX 4090", "EU-DE-01", spot=0),
            row("RTX 4090", "US-TX-02", spot=12000),
        ],
        {"billing_mode": "spot"},
        [("RTX 4090", "US-TX-02", D("0.12"))],
        [
            ("RTX 4090", "EU-DE-01", "billing_mode_unsupported"),
            ("RTX 4090", "EU-NL-01", "billing_mode_unsupported"),
        ],
        id="spot-not-sold-or-price-zero",
    ),
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", bills_on_demand=False),
            row("RTX 4090", "EU-DE-01", 0),
            row("RTX 4090", "US-TX-02", 31000),
        ],
        {},
        [("RTX 4090", "US-TX-02", D("0.31"))],
        [
            ("RTX 4090", "EU-DE-01", "billing_mode_unsupported"),
            ("RTX 4090", "EU-NL-01", "billing_mode_unsupported"),
        ],
        id="on-demand-not-sold-or-price-zero",
    ),
    # --- max price: for all the GPUs asked for ---
    pytest.param(
        [row("RTX 4090", "EU-NL-01", 30000), row("RTX 4090", "EU-DE-01", 30001)],
        {"gpu_num": 2, "max_price_per_hour": D("0.60")},
        [("RTX 4090", "EU-NL-01", D("0.60"))],
        [("RTX 4090", "EU-DE-01", "over_max_price")],
        id="max-price-applies-to-the-total",
    ),
    pytest.param(
        [row("RTX 4090", "EU-NL-01", 30000, 10000)],
        {"billing_mode": "spot", "gpu_num": 3, "max_price_per_hour": D("0.29999")},
        [],
        [("RTX 4090", "EU-NL-01", "over_max_price")],
        id="max-price-with-spot-price",
    ),
    # --- root disk ---
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", 30000, min_rootfs=10, max_rootfs=1000),
            row("RTX 4090", "EU-DE-01", 31000, max_rootfs=500),
            row("RTX 4090", "US-TX-02", 32000, min_rootfs=700),
            row("RTX 4090", "US-CA-06", 33000, max_rootfs=0),
        ],
        {"rootfs_size": 600},
        [("RTX 4090", "EU-NL-01", D("0.30")), ("RTX 4090", "US-CA-06", D("0.33"))],
        [
            ("RTX 4090", "EU-DE-01", "rootfs_out_of_range"),
            ("RTX 4090", "US-TX-02", "rootfs_out_of_range"),
        ],
        id="rootfs-outside-the-product-limits",
    ),
    # --- lists of acceptable names ---
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", 34000),
            row("RTX 3090", "EU-NL-01", 18000),
            row("RTX 3090", "EU-DE-01", 10000),
        ],
        {"product_names": ["RTX 4090", "RTX 3090"], "region": "EU-NL-01"},
        [
            ("RTX 3090", "EU-NL-01", D("0.18")),
            ("RTX 4090", "EU-NL-01", D("0.34")),
            ("RTX 3090", "EU-DE-01", D("0.10")),
        ],
        [],
        id="names-cheapest-across-names-within-region-order",
    ),
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", inventory_state="low", memory_per_gpu=10),
            row("RTX 3090", "EU-NL-01", inventory_state="high", memory_per_gpu=90),
        ],
        {"product_names": ["RTX 4090", "RTX 3090"]},
        [("RTX 4090", "EU-NL-01", D("0.30")), ("RTX 3090", "EU-NL-01", D("0.30"))],
        [],
        id="names-earlier-name-wins-a-price-tie",
    ),
    pytest.param(
        [row("RTX 4090", "EU-NL-01")],
        {"product_names": ["  rtx   4090 ", "RTX 4090"]},
        [("RTX 4090", "EU-NL-01", D("0.30"))],
        [],
        id="names-case-and-spaces-ignored-duplicates-once",
    ),
    pytest.param(
        [row("RTX 4090", "EU-NL-01")],
        {"product_names": ["RTX 4090", "RTX 9999"]},
        [("RTX 4090", "EU-NL-01", D("0.30"))],
        [("RTX 9999", "", "product_not_found")],
        id="names-unknown-one-reported",
    ),
    # --- ties ---
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", inventory_state="low"),
            row("RTX 4090", "EU-DE-01", inventory_state="high"),
            row("RTX 4090", "US-TX-02", inventory_state="normal"),
            row("RTX 4090", "US-CA-06", inventory_state="none"),
            row("RTX 4090", "AS-JP-03", inventory_state=""),
        ],
        {},
        [
            ("RTX 4090", "EU-DE-01", D("0.30")),
            ("RTX 4090", "US-TX-02", D("0.30")),
            ("RTX 4090", "EU-NL-01", D("0.30")),
            ("RTX 4090", "AS-JP-03", D("0.30")),
            ("RTX 4090", "US-CA-06", D("0.30")),
        ],
        [],
        id="ties-more-inventory-first",
    ),
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", memory_per_gpu=62, cpu_per_gpu=16),
            row("RTX 4090", "EU-DE-01", memory_per_gpu=92, cpu_per_gpu=8),
            row("RTX 4090", "US-TX-02", memory_per_gpu=92, cpu_per_gpu=16),
        ],
        {},
        [
            ("RTX 4090", "US-TX-02", D("0.30")),
            ("RTX 4090", "EU-DE-01", D("0.30")),
            ("RTX 4090", "EU-NL-01", D("0.30")),
        ],
        [],
        id="ties-then-memory-then-cpu",
    ),
    # --- availability ---
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", 10000, available=False, inventory_state="none"),
            row("RTX 4090", "EU-DE-01"),
        ],
        {},
        [("RTX 4090", "EU-DE-01", D("0.30"))],
        [("RTX 4090", "EU-NL-01", "unavailable")],
        id="unavailable-left-out",
    ),
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", available_gpu_number=2),
            row("RTX 4090", "EU-DE-01", available_gpu_number=None),
            row("RTX 4090", "US-TX-02", 31000, available_gpu_number=8),
        ],
        {"gpu_num": 4},
        [("RTX 4090", "EU-DE-01", D("1.20")), ("RTX 4090", "US-TX-02", D("1.24"))],
        [("RTX 4090", "EU-NL-01", "not_enough_gpus")],
        id="not-enough-gpus-free",
    ),
    pytest.param(
        [
            row("RTX 4090", "EU-NL-01", 10000, capacity_failed_in=60),
            row("RTX 4090", "EU-DE-01", capacity_failed_in=-1),
        ],
        {},
        [("RTX 4090", "EU-DE-01", D("0.30"))],
        [("RTX 4090", "EU-NL-01", "capacity_recently_failed")],
        id="capacity-failed-recently-skipped",
    ),
]


@pytest.mark.parametrize(("rows", "request_", "expected_offers", "expected_rejected"), CASES)
def test_selection_rule(
    regions: dict[str, Region],
    settings: Any,
    rows: list[dict],
    request_: dict[str, Any],
    expected_offers: list[tuple[str, str, Decimal]],
    expected_rejected: list[tuple[str, str, str]],
) -> None:
    request_ = dict(request_)
    settings.CATALOG_REGION_FALLBACK_ORDER = request_.pop("fallback", [])
    now = timezone.now()
    build(regions, rows, now)

    selection = offers_select(**{**DEFAULT_REQUEST, **request_}, now=now)

    assert [(o.product_name, o.region_code, o.price_per_hour) for o in selection.offers] == (
        expected_offers
    )
    assert [(r.product_name, r.region_code, r.reason) for r in selection.rejected] == (
        expected_rejected
    )


def test_offer_carries_everything_provisioning_needs(regions: dict[str, Region]) -> None:
    product = ProductFactory.create(
        name="RTX 4090 24GB",
        novita_id="4090.16c62g.sim",
        region=regions["EU-NL-01"],
        price=34000,
        spot_price=17000,
        inventory_state="low",
        min_rootfs=10,
        max_rootfs=1000,
    )

    selection = offers_select(
        **{**DEFAULT_REQUEST, "product_names": ["RTX 4090 24GB"], "gpu_num": 2}
    )

    assert selection.best == Offer(
        product_pk=product.pk,
        novita_product_id="4090.16c62g.sim",
        product_name="RTX 4090 24GB",
        region_code="EU-NL-01",
        cluster_id="eu-nl-01",
        billing_mode="on_demand",
        gpu_num=2,
        price_per_gpu_hour=D("0.34"),
        price_per_hour=D("0.68"),
        inventory_state="low",
        cpu_per_gpu=16,
        memory_per_gpu=62,
        min_rootfs=10,
        max_rootfs=1000,
    )
    assert selection.offers == (selection.best,)


def test_rejection_messages_say_why(regions: dict[str, Region]) -> None:
    now = timezone.now().replace(microsecond=0)
    build(
        regions,
        [
            row("RTX 4090", "EU-NL-01", available=False, inventory_state="none"),
            row("RTX 4090", "EU-DE-01", max_rootfs=500),
            row("RTX 4090", "US-TX-02", capacity_failed_in=90),
            row("RTX 4090", "US-CA-06", 40000),
            row("RTX 4090", "AS-JP-03", bills_spot=False),
        ],
        now,
    )

    selection = offers_select(
        **{**DEFAULT_REQUEST, "rootfs_size": 600, "max_price_per_hour": D("0.35")}, now=now
    )

    until = (now + timedelta(seconds=90)).isoformat().replace("+00:00", "Z")
    assert [(r.region_code, r.message) for r in selection.rejected] == [
        ("EU-DE-01", "RTX 4090 in EU-DE-01 takes a root disk of 10-500 GB; 600 GB asked for."),
        ("EU-NL-01", "RTX 4090 in EU-NL-01 is not available to deploy (inventory none)."),
        (
            "US-CA-06",
            "RTX 4090 in US-CA-06 costs 0.40 USD/h for 1 GPU(s), over the maximum of 0.35 USD/h.",
        ),
        (
            "US-TX-02",
            f"RTX 4090 in US-TX-02 had no capacity at the last attempt; skipped until {until}.",
        ),
    ]
    assert [(o.region_code) for o in selection.offers] == ["AS-JP-03"]


def test_capacity_memory_expires(regions: dict[str, Region], settings: Any) -> None:
    settings.CATALOG_CAPACITY_MEMORY_SECONDS = 180
    settings.CATALOG_OFFER_TTL_SECONDS = 60
    start = timezone.now()
    build(regions, [row("RTX 4090", "EU-NL-01", 20000), row("RTX 4090", "EU-DE-01")], start)
    assert _regions_offered(start) == ["EU-NL-01", "EU-DE-01"]

    offer_capacity_failed(novita_product_id="rtx-4090.sim", cluster_id="eu-nl-01", now=start)

    assert _regions_offered(start) == ["EU-DE-01"]
    assert _regions_offered(start + timedelta(seconds=179)) == ["EU-DE-01"]
    assert _regions_offered(start + timedelta(seconds=180)) == ["EU-NL-01", "EU-DE-01"]
    assert Product.objects.get(region__code="EU-NL-01").capacity_failed_until == start + (
        timedelta(seconds=180)
    )


def _regions_offered(now: datetime) -> list[str]:
    selection = offers_select(**DEFAULT_REQUEST, now=now)
    return [o.region_code for o in selection.offers]


def test_capacity_failure_of_another_region_leaves_the_rest(regions: dict[str, Region]) -> None:
    build(regions, [row("RTX 4090", "EU-NL-01"), row("RTX 4090", "EU-DE-01")], timezone.now())

    offer_capacity_failed(novita_product_id="rtx-4090.sim", cluster_id="eu-de-01")

    assert Product.objects.filter(capacity_failed_until__isnull=False).get().region.code == (
        "EU-DE-01"
    )


def test_selection_is_cached_until_the_catalog_changes(regions: dict[str, Region]) -> None:
    build(regions, [row("RTX 4090", "EU-NL-01")], timezone.now())
    cache = NamedCache("catalog")

    first = offers_select(**DEFAULT_REQUEST)
    ProductFactory.create(name="RTX 4090", region=regions["EU-DE-01"], price=1000)  # not seen yet
    second = offers_select(**DEFAULT_REQUEST)

    assert second == first
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.sets) == (1, 1, 1)

    offer_capacity_failed(novita_product_id="rtx-4090.sim", cluster_id="eu-nl-01")
    third = offers_select(**DEFAULT_REQUEST)

    assert [o.region_code for o in third.offers] == ["EU-DE-01"]
    assert [(r.region_code, r.reason) for r in third.rejected] == [
        ("EU-NL-01", "capacity_recently_failed")
    ]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.sets) == (1, 2, 2)


def test_offers_require_no_offer(regions: dict[str, Region]) -> None:
    build(
        regions,
        [row("RTX 4090", "EU-NL-01", available=False, inventory_state="none")],
        timezone.now(),
    )

    with pytest.raises(NoOfferAvailable) as raised:
        offers_require(**{**DEFAULT_REQUEST, "product_names": ["RTX 4090", "RTX 9999"]})

    assert raised.value.status_code == 404
    assert raised.value.code == "no_offer_available"
    assert raised.value.message == "No offer for 1 x RTX 4090 or RTX 9999 (on_demand)."
    assert raised.value.details == {
        "rejected": [
            {
                "product_name": "RTX 9999",
                "region_code": "",
                "reason": "product_not_found",
                "message": "No product is named 'RTX 9999'.",
            },
            {
                "product_name": "RTX 4090",
                "region_code": "EU-NL-01",
                "reason": "unavailable",
                "message": "RTX 4090 in EU-NL-01 is not available to deploy (inventory none).",
            },
        ]
    }


def test_offers_require_unknown_product(regions: dict[str, Region]) -> None:
    build(regions, [row("RTX 4090", "EU-NL-01")], timezone.now())

    with pytest.raises(UnknownProduct) as raised:
        offers_require(**{**DEFAULT_REQUEST, "product_names": ["RTX 9999", "A100"]})

    assert (raised.value.status_code, raised.value.code) == (404, "product_not_found")
    assert raised.value.details == {"product_names": ["RTX 9999", "A100"]}


def test_offers_require_returns_the_selection(regions: dict[str, Region]) -> None:
    build(regions, [row("RTX 4090", "EU-NL-01")], timezone.now())

    selection = offers_require(**DEFAULT_REQUEST)

    assert [o.region_code for o in selection.offers] == ["EU-NL-01"]


@pytest.mark.parametrize(
    ("change", "details"),
    [
        pytest.param({"gpu_num": 0}, {"gpu_num": ["Ask for 1 to 8 GPUs."]}, id="gpu-num-0"),
        pytest.param({"gpu_num": 9}, {"gpu_num": ["Ask for 1 to 8 GPUs."]}, id="gpu-num-9"),
        pytest.param(
            {"billing_mode": "monthly"},
            {"billing_mode": ["Use one of: on_demand, spot."]},
            id="billing-monthly",
        ),
        pytest.param(
            {"max_price_per_hour": D("-0.01")},
            {"max_price_per_hour": ["A price in USD per hour, 0 or more."]},
            id="negative-price",
        ),
        pytest.param(
            {"max_price_per_hour": D("NaN")},
            {"max_price_per_hour": ["A price in USD per hour, 0 or more."]},
            id="nan-price",
        ),
        pytest.param(
            {"rootfs_size": 0}, {"rootfs_size": ["A size in GB, 1 or more."]}, id="rootfs-0"
        ),
        pytest.param(
            {"product_names": []}, {"product_names": ["Name at least one product."]}, id="no-names"
        ),
        pytest.param(
            {"product_names": ["RTX 4090", " "]},
            {"product_names": ["Product names must be non-empty strings."]},
            id="blank-name",
        ),
    ],
)
def test_selection_rejects_bad_input(
    regions: dict[str, Region], change: dict[str, Any], details: dict[str, list[str]]
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        offers_select(**{**DEFAULT_REQUEST, **change})

    assert raised.value.status_code == 400
    assert raised.value.details == details


def test_unknown_region(regions: dict[str, Region]) -> None:
    with pytest.raises(UnknownRegion) as raised:
        offers_select(**{**DEFAULT_REQUEST, "region": "MARS-01"})

    message = (
        "Unknown region 'MARS-01': use a region code such as EU-NL-01 or a cluster id. "
        "Known regions: AS-JP-03, EU-DE-01, EU-NL-01, US-CA-06, US-TX-02."
    )
    assert (raised.value.status_code, raised.value.code) == (400, "validation_error")
    assert raised.value.details == {"region": [message]}


@pytest.mark.parametrize("value", ["EU-NL-01", "eu-nl-01", " Eu-Nl-01 "])
def test_region_resolve_by_code_or_cluster_id(regions: dict[str, Region], value: str) -> None:
    assert region_resolve(value) == regions["EU-NL-01"]


def test_region_resolve_cluster_id_differs_from_code(fresh_catalog: Any) -> None:
    region = Region.objects.create(
        cluster_id="as-sgp-2",
        code="AS-SG-02",
        name="AS-SG-02 (Singapore)",
        fetched_at=timezone.now(),
    )

    assert region_resolve("AS-SGP-2") == region
    assert region_resolve("as-sg-02") == region


def test_delisted_region_offers_nothing(regions: dict[str, Region]) -> None:
    build(regions, [row("RTX 4090", "EU-NL-01"), row("RTX 4090", "EU-DE-01")], timezone.now())
    Region.objects.filter(code="EU-NL-01").update(listed=False)

    selection = offers_select(**DEFAULT_REQUEST)

    assert [o.region_code for o in selection.offers] == ["EU-DE-01"]
    assert [(r.region_code, r.reason) for r in selection.rejected] == [("EU-NL-01", "unavailable")]


def test_a_template_needing_newer_cuda_leaves_older_products_out(
    regions: dict[str, Region],
) -> None:
    now = timezone.now()
    build(
        regions,
        [
            row("RTX 4090", "EU-NL-01", 30000, cuda_version="12.0"),
            row("RTX 4090", "EU-DE-01", 31000, cuda_version="12.8"),
            row("RTX 4090", "US-TX-02", 32000),  # says nothing: kept
            row("RTX 4090", "US-CA-06", 33000, cuda_version="12.4"),
        ],
        now,
    )
    selection = offers_select(**DEFAULT_REQUEST, min_cuda_version="12.4", now=now)
    assert [(o.region_code, o.cuda_version) for o in selection.offers] == [
        ("EU-DE-01", "12.8"),
        ("US-TX-02", ""),
        ("US-CA-06", "12.4"),
    ]
    assert [(r.region_code, r.reason, r.message) for r in selection.rejected] == [
        ("EU-NL-01", "cuda_too_old", "RTX 4090 in EU-NL-01 has CUDA 12.0; the template needs 12.4.")
    ]
    unrestricted = offers_select(**DEFAULT_REQUEST, now=now)
    assert len(unrestricted.offers) == 4


def test_a_volume_keeps_offers_to_its_cluster(regions: dict[str, Region]) -> None:
    now = timezone.now()
    build(regions, FIVE, now)
    cluster = regions["EU-DE-01"].cluster_id
    selection = offers_select(**DEFAULT_REQUEST, cluster_id=cluster, now=now)
    assert [(o.region_code, o.cluster_id) for o in selection.offers] == [("EU-DE-01", cluster)]
    assert {r.reason for r in selection.rejected} == {"other_cluster"}
    assert len(selection.rejected) == 4
    with pytest.raises(NoOfferAvailable):
        offers_require(**DEFAULT_REQUEST, cluster_id="no-such-cluster", now=now)


@pytest.mark.parametrize(
    ("version", "minimum", "ok"),
    [
        ("12.4", "12.4", True),
        ("12.10", "12.4", True),
        ("11.8", "12.1", False),
        ("12", "12.1", False),
        ("", "12.4", True),
        ("12.4", "", True),
        ("n/a", "12.4", True),
    ],
)
def test_cuda_versions_compare_as_numbers(version: str, minimum: str, ok: bool) -> None:
    assert cuda_at_least(version, minimum) is ok
