"""The catalog API over HTTP: regions, products, the optimal offer, templates, sync."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.caches import NamedCache
from catalog.models import Product, Region
from catalog.services import _lease_acquire
from novita_sandbox.control import SandboxControl
from tests.catalog.conftest import FIRST_SYNC_COUNTS, SEED_CALLS, upstream_calls
from tests.catalog.factories import ProductFactory
from tests.jobs.conftest import SentTasks


def error(response: Any) -> tuple[int, str, Any]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["details"]


@pytest.fixture
def catalog_rows(regions: dict[str, Region]) -> dict[str, Product]:
    return {
        "4090-nl": ProductFactory.create(
            name="RTX 4090 24GB",
            novita_id="4090.sim",
            region=regions["EU-NL-01"],
            price=34000,
            spot_price=17000,
            bills_monthly=True,
            monthly_prices=[{"month": 1, "price": 21500000}],
            inventory_state="low",
        ),
        "4090-tx": ProductFactory.create(
            name="RTX 4090 24GB",
            novita_id="4090.sim",
            region=regions["US-TX-02"],
            price=34000,
            spot_price=16000,
            inventory_state="high",
        ),
        "3090-nl": ProductFactory.create(
            name="RTX 3090 24GB",
            novita_id="3090.sim",
            region=regions["EU-NL-01"],
            price=18000,
            spot_price=9000,
            available_gpu_number=2,
        ),
        "l40s-de": ProductFactory.create(
            name="L40S 48GB",
            novita_id="l40s.sim",
            region=regions["EU-DE-01"],
            price=86000,
            spot_price=0,
            bills_spot=False,
        ),
        "h100-jp": ProductFactory.create(
            name="H100 SXM 80GB",
            novita_id="h100.sim",
            region=regions["AS-JP-03"],
            price=239000,
            spot_price=129000,
            available=False,
            inventory_state="none",
        ),
    }


# --- access ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/v1/regions/", "/api/v1/products/", "/api/v1/products/optimal/?product_name=x"],
)
def test_reads_need_a_key(db: None, path: str) -> None:
    response = APIClient().get(path)

    assert error(response)[:2] == (401, "not_authenticated")


def test_staff_read_too(staff_client: APIClient, catalog_rows: dict[str, Product]) -> None:
    assert staff_client.get("/api/v1/products/").json()["count"] == 5


# --- regions -----------------------------------------------------------------------------------


def test_regions(api_client: APIClient, regions: dict[str, Region]) -> None:
    Region.objects.filter(code="AS-JP-03").update(gpu_types=["H100 SXM 80GB"])

    response = api_client.get("/api/v1/regions/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 5
    assert [r["code"] for r in body["results"]] == [
        "AS-JP-03",
        "EU-DE-01",
        "EU-NL-01",
        "US-CA-06",
        "US-TX-02",
    ]
    first = body["results"][0]
    assert {k: v for k, v in first.items() if k != "fetched_at"} == {
        "code": "AS-JP-03",
        "name": "AS-JP-03 (Somewhere)",
        "cluster_id": "as-jp-03",
        "gpu_types": ["H100 SXM 80GB"],
        "supports_network_storage": False,
        "supports_instance_network": False,
        "listed": True,
    }


# --- products ----------------------------------------------------------------------------------


def _names(response: Any) -> list[tuple[str, str, str | None]]:
    return [(p["name"], p["region"], p["price_per_hour"]) for p in response.json()["results"]]


def test_products_cheapest_first_with_usd_strings(
    api_client: APIClient, catalog_rows: dict[str, Product]
) -> None:
    response = api_client.get("/api/v1/products/")

    assert response.status_code == 200
    assert _names(response) == [
        ("RTX 3090 24GB", "EU-NL-01", "0.18000"),
        ("RTX 4090 24GB", "EU-NL-01", "0.34000"),
        ("RTX 4090 24GB", "US-TX-02", "0.34000"),
        ("L40S 48GB", "EU-DE-01", "0.86000"),
        ("H100 SXM 80GB", "AS-JP-03", "2.39000"),
    ]
    item = response.json()["results"][1]
    assert {k: v for k, v in item.items() if k != "fetched_at"} == {
        "id": catalog_rows["4090-nl"].pk,
        "novita_id": "4090.sim",
        "name": "RTX 4090 24GB",
        "region": "EU-NL-01",
        "cluster_id": "eu-nl-01",
        "cpu_per_gpu": 16,
        "memory_per_gpu": 62,
        "disk_per_gpu": 200,
        "on_demand_price_per_gpu_hour": "0.34000",
        "spot_price_per_gpu_hour": "0.17000",
        "monthly_prices": [{"month": 1, "price_per_gpu": "215.00000"}],
        "billing_methods": ["on_demand", "spot", "monthly"],
        "billing_mode": "on_demand",
        "gpu_num": 1,
        "price_per_hour": "0.34000",
        "available": True,
        "inventory_state": "low",
        "available_gpu_number": None,
        "min_rootfs": 10,
        "max_rootfs": 1000,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            "billing_mode=spot",
            [
                ("RTX 3090 24GB", "EU-NL-01", "0.09000"),
                ("RTX 4090 24GB", "US-TX-02", "0.16000"),
                ("RTX 4090 24GB", "EU-NL-01", "0.17000"),
                ("H100 SXM 80GB", "AS-JP-03", "1.29000"),
            ],
            id="spot-only-spot-prices",
        ),
        pytest.param(
            "name=4090&region=us-tx-02",
            [("RTX 4090 24GB", "US-TX-02", "0.34000")],
            id="name-part-and-region-by-cluster-id",
        ),
        pytest.param(
            "available=false", [("H100 SXM 80GB", "AS-JP-03", "2.39000")], id="unavailable"
        ),
        pytest.param(
            "available=true&max_price=0.68&gpu_num=2",
            [
                ("RTX 3090 24GB", "EU-NL-01", "0.36000"),
                ("RTX 4090 24GB", "EU-NL-01", "0.68000"),
                ("RTX 4090 24GB", "US-TX-02", "0.68000"),
            ],
            id="max-price-for-gpu-num",
        ),
        pytest.param(
            "gpu_num=4&billing_mode=on_demand&max_price=1.36",
            [("RTX 4090 24GB", "EU-NL-01", "1.36000"), ("RTX 4090 24GB", "US-TX-02", "1.36000")],
            id="gpu-num-beyond-free-gpus",
        ),
    ],
)
def test_product_filters(
    api_client: APIClient,
    catalog_rows: dict[str, Product],
    query: str,
    expected: list[tuple[str, str, str]],
) -> None:
    response = api_client.get(f"/api/v1/products/?{query}")

    assert response.status_code == 200
    assert _names(response) == expected


def test_products_paginated(api_client: APIClient, catalog_rows: dict[str, Product]) -> None:
    body = api_client.get("/api/v1/products/?page_size=2&page=2").json()

    assert (body["count"], len(body["results"])) == (5, 2)
    assert [p["region"] for p in body["results"]] == ["US-TX-02", "EU-DE-01"]


BAD_PRODUCT_QUERIES = [
    ("region=MARS-01", "region"),
    ("billing_mode=monthly", "billing_mode"),
    ("gpu_num=0", "gpu_num"),
    ("gpu_num=9", "gpu_num"),
    ("gpu_num=two", "gpu_num"),
    ("max_price=-1", "max_price"),
    ("max_price=abc", "max_price"),
    ("max_price=NaN", "max_price"),
    ("max_price=0.123456", "max_price"),
    ("available=maybe", "available"),
]


def test_products_unknown_region_says_which_exist(
    api_client: APIClient, catalog_rows: dict[str, Product]
) -> None:
    _, _, details = error(api_client.get("/api/v1/products/?region=MARS-01"))

    assert details == {
        "region": [
            "Unknown region 'MARS-01': use a region code such as EU-NL-01 or a cluster id. "
            "Known regions: AS-JP-03, EU-DE-01, EU-NL-01, US-CA-06, US-TX-02."
        ]
    }


# --- optimal -----------------------------------------------------------------------------------


OFFER_4090_TX = {
    "product_id": None,  # filled in by the test
    "novita_product_id": "4090.sim",
    "product_name": "RTX 4090 24GB",
    "region_code": "US-TX-02",
    "cluster_id": "us-tx-02",
    "billing_mode": "spot",
    "gpu_num": 2,
    "price_per_gpu_hour": "0.16000",
    "price_per_hour": "0.32000",
    "inventory_state": "high",
    "cpu_per_gpu": 16,
    "memory_per_gpu": 62,
    "min_rootfs": 10,
    "max_rootfs": 1000,
}


def test_optimal_dry_run(api_client: APIClient, catalog_rows: dict[str, Product]) -> None:
    response = api_client.get(
        "/api/v1/products/optimal/?product_names=RTX 4090 24GB, L40S 48GB, H100 SXM 80GB"
        "&billing_mode=spot&gpu_num=2&region=US-TX-02&rootfs_size=100&max_price_per_hour=1"
    )

    assert response.status_code == 200
    body = response.json()
    best = {**OFFER_4090_TX, "product_id": catalog_rows["4090-tx"].pk}
    assert body["offer"] == best
    assert [(o["region_code"], o["price_per_hour"]) for o in body["offers"]] == [
        ("US-TX-02", "0.32000"),
        ("EU-NL-01", "0.34000"),
    ]
    assert body["offers"][0] == best
    assert body["rejected"] == [
        {
            "product_name": "L40S 48GB",
            "region_code": "EU-DE-01",
            "reason": "billing_mode_unsupported",
            "message": "L40S 48GB in EU-DE-01 is not sold as spot.",
        },
        {
            "product_name": "H100 SXM 80GB",
            "region_code": "AS-JP-03",
            "reason": "unavailable",
            "message": "H100 SXM 80GB in AS-JP-03 is not available to deploy (inventory none).",
        },
    ]


def test_optimal_no_offer(api_client: APIClient, catalog_rows: dict[str, Product]) -> None:
    response = api_client.get("/api/v1/products/optimal/?product_name=H100 SXM 80GB")

    status, code, details = error(response)
    assert (status, code) == (404, "no_offer_available")
    assert response.json()["error"]["message"] == "No offer for 1 x H100 SXM 80GB (on_demand)."
    assert details == {
        "rejected": [
            {
                "product_name": "H100 SXM 80GB",
                "region_code": "AS-JP-03",
                "reason": "unavailable",
                "message": "H100 SXM 80GB in AS-JP-03 is not available to deploy (inventory none).",
            }
        ]
    }


def test_optimal_unknown_product(api_client: APIClient, catalog_rows: dict[str, Product]) -> None:
    status, code, details = error(api_client.get("/api/v1/products/optimal/?product_name=B200"))

    assert (status, code, details) == (404, "product_not_found", {"product_names": ["B200"]})


BAD_OPTIMAL_QUERIES = [
    ("", "product_name"),
    ("product_names=,, ,", "product_name"),
    ("product_name=a&product_names=b", "product_names"),
    ("product_name=a&region=MARS-01", "region"),
    ("product_name=a&billing_mode=monthly", "billing_mode"),
    ("product_name=a&gpu_num=0", "gpu_num"),
    ("product_name=a&gpu_num=9", "gpu_num"),
    ("product_name=a&gpu_num=1.5", "gpu_num"),
    ("product_name=a&max_price_per_hour=-0.1", "max_price_per_hour"),
    ("product_name=a&max_price_per_hour=1e400", "max_price_per_hour"),
    ("product_name=a&max_price_per_hour=free", "max_price_per_hour"),
    ("product_name=a&rootfs_size=0", "rootfs_size"),
    ("product_name=a&rootfs_size=big", "rootfs_size"),
]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [("products/", q, f) for q, f in BAD_PRODUCT_QUERIES]
    + [("products/optimal/", q, f) for q, f in BAD_OPTIMAL_QUERIES],
)
def test_bad_input_is_a_400_naming_the_field(
    api_client: APIClient, catalog_rows: dict[str, Product], path: str, query: str, field: str
) -> None:
    status, code, details = error(api_client.get(f"/api/v1/{path}?{query}"))

    assert (status, code, list(details)) == (400, "validation_error", [field])


def test_optimal_end_to_end_against_novita(
    novita: SandboxControl, api_client: APIClient, settings: Any
) -> None:
    settings.CATALOG_REGION_FALLBACK_ORDER = ["EU-NL-01"]
    url = "/api/v1/products/optimal/?product_name=RTX 3090 24GB&region=US-TX-02&gpu_num=2"

    first = api_client.get(url)

    assert first.status_code == 200
    body = first.json()
    assert [
        (o["region_code"], o["price_per_hour"], o["inventory_state"]) for o in body["offers"]
    ] == [
        ("EU-NL-01", "0.36000", "normal"),
        ("EU-DE-01", "0.36000", "high"),
    ]
    assert body["offer"]["novita_product_id"] == "3090.8c31g.sim"
    assert body["offer"]["cluster_id"] == "eu-nl-1"
    assert body["rejected"] == [
        {
            "product_name": "RTX 3090 24GB",
            "region_code": "US-TX-02",
            "reason": "unavailable",
            "message": "RTX 3090 24GB in US-TX-02 is not available to deploy (inventory none).",
        }
    ]
    assert upstream_calls(novita) == SEED_CALLS

    second = api_client.get(url)

    assert second.json() == body
    assert upstream_calls(novita) == SEED_CALLS  # no upstream call within the TTL
    stats = NamedCache("catalog").stats()
    assert (stats.hits, stats.misses) == (1, 1)


# --- templates ---------------------------------------------------------------------------------


def test_a_stale_catalog_is_answered_without_waiting_on_novita(
    novita: SandboxControl,
    api_client: APIClient,
    stale_since: datetime,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Past CATALOG_SYNC_INTERVAL_SECONDS the stored catalog is answered as it is, with no call
    to Novita in the request (here Novita would fail anyway); a catalog.sync task refreshes it."""
    novita.set_faults(fail_next=[{"path": "/clusters", "status": 503, "count": -1}])

    with django_capture_on_commit_callbacks(execute=True):
        products = api_client.get("/api/v1/products/?name=RTX 4090&region=US-TX-02")
        regions = api_client.get("/api/v1/regions/")

    assert (products.status_code, regions.status_code) == (200, 200)
    assert [(p["name"], p["region"]) for p in products.json()["results"]] == [
        ("RTX 4090 24GB", "US-TX-02")
    ]
    assert len(regions.json()["results"]) == 5
    assert upstream_calls(novita) == SEED_CALLS  # the first sync's, nothing since
    assert sent_tasks.names_and_args == [("catalog.sync", [])]


def test_template_configuration(novita: SandboxControl, api_client: APIClient) -> None:
    response = api_client.get("/api/v1/templates/40117/")

    assert response.status_code == 200
    assert response.json() == {
        "id": "40117",
        "name": "pytorch-jupyter",
        "image": "ghcr.io/example/pytorch-lab:2.4",
        "image_auth_id": "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
        "start_command": "",
        "rootfs_size": 40,
        "ports": [
            {"port": 8888, "type": "http"},
            {"port": 7860, "type": "http"},
            {"port": 22, "type": "tcp"},
        ],
        "envs": [{"key": "JUPYTER_TOKEN"}, {"key": "PYTHONUNBUFFERED"}],
    }
    assert b"demo-token" not in response.content
    assert b"ghp_simulated" not in response.content
    assert "GET /repository/auths" not in upstream_calls(novita)


def test_template_unknown(novita: SandboxControl, api_client: APIClient) -> None:
    status, code, _ = error(api_client.get("/api/v1/templates/999999/"))

    assert (status, code) == (404, "template_not_found")


def test_template_novita_down(novita: SandboxControl, api_client: APIClient) -> None:
    novita.set_faults(fail_next=[{"path": "/template", "status": 502, "count": -1}])

    status, code, _ = error(api_client.get("/api/v1/templates/40117/"))

    assert (status, code) == (503, "upstream_unavailable")


# --- sync (staff) ------------------------------------------------------------------------------


def test_sync_endpoint(novita: SandboxControl, staff_client: APIClient) -> None:
    response = staff_client.post("/api/v1/catalog/sync/")

    assert response.status_code == 200
    body = response.json()
    assert {k: v for k, v in body.items() if k != "duration_seconds"} == {
        "outcome": "success",
        **FIRST_SYNC_COUNTS,
    }


def test_sync_endpoint_is_for_staff(novita: SandboxControl, api_client: APIClient) -> None:
    assert error(api_client.post("/api/v1/catalog/sync/"))[:2] == (403, "permission_denied")
    assert upstream_calls(novita) == {}


def test_sync_endpoint_failure(novita: SandboxControl, staff_client: APIClient) -> None:
    novita.set_faults(fail_next=[{"path": "/clusters", "status": 500, "count": -1}])

    assert error(staff_client.post("/api/v1/catalog/sync/"))[:2] == (503, "upstream_unavailable")
    assert Region.objects.count() == 0


def test_sync_endpoint_while_another_runs(novita: SandboxControl, staff_client: APIClient) -> None:
    from django.utils import timezone

    _lease_acquire("other", timezone.now())

    assert error(staff_client.post("/api/v1/catalog/sync/"))[:2] == (409, "sync_in_progress")
    assert upstream_calls(novita) == {}
