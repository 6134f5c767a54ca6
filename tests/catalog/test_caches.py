"""Named caches: statistics shared by every process, falsy values, expiry, the staff API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from catalog.caches import CacheStats, NamedCache
from catalog.errors import CacheNotFound

BACKEND = "file" if settings.EMBEDDED_MODE else "redis"


def figures(name: str) -> tuple[int | None, int, int, int, int, int, int]:
    s = NamedCache(name).stats()
    return s.entries, s.hits, s.misses, s.expired, s.sets, s.deletes, s.clears


def requests_metric(cache: str, result: str) -> float:
    labels = {"cache": cache, "result": result}
    return REGISTRY.get_sample_value("novitai_cache_requests_total", labels) or 0.0


@pytest.mark.parametrize("value", [0, "", False, [], {}, 0.0], ids=repr)
def test_falsy_values_are_hits(value: Any) -> None:
    cache = NamedCache("catalog")
    cache.set("k", value, 60)

    assert cache.get("k", "default") == value
    assert figures("catalog") == (1, 1, 0, 0, 1, 0, 0)


def test_expired_entries_are_counted() -> None:
    cache = NamedCache("templates")
    cache.set("k", "v", 10, now=1000.0)

    assert cache.get("k", now=1009.9) == "v"
    assert cache.get("k", "gone", now=1010.0) == "gone"
    assert cache.get("k", "gone", now=1010.0) == "gone"
    assert figures("templates") == (0, 1, 2, 1, 1, 0, 0)


def test_get_or_set_computes_once() -> None:
    cache = NamedCache("catalog")
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 7

    assert cache.get_or_set("k", compute, 60) == 7
    assert cache.get_or_set("k", compute, 60) == 7
    assert calls == [1]


def test_prometheus_counts_hits_and_misses() -> None:
    hits, misses = requests_metric("novita", "hit"), requests_metric("novita", "miss")
    cache = NamedCache("novita")
    cache.set("k", 1, 60)

    cache.get("k")
    cache.get("k")
    cache.get("other")

    assert requests_metric("novita", "hit") == hits + 2
    assert requests_metric("novita", "miss") == misses + 1


def test_statistics_are_shared_by_processes() -> None:
    NamedCache("catalog").set("k", 1, 60)
    script = (
        "import django; django.setup()\n"
        "from catalog.caches import NamedCache\n"
        "c = NamedCache('catalog'); c.get('k'); c.get('k'); c.get('nope')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "novitai.settings"}
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        env=env,
        cwd=Path(settings.BASE_DIR),
        capture_output=True,
        timeout=60,
    )

    assert figures("catalog") == (1, 2, 1, 0, 1, 0, 0)


def test_clear_keeps_statistics_and_other_caches() -> None:
    catalog, templates = NamedCache("catalog"), NamedCache("templates")
    catalog.set("a", 1, 60)
    templates.set("a", 1, 60)
    templates.set("b", 2, 60)
    templates.get("a")

    templates.clear()

    assert figures("templates") == (0, 1, 0, 0, 2, 0, 1)
    assert figures("catalog") == (1, 0, 0, 0, 1, 0, 0)
    assert catalog.get("a") == 1


def test_delete() -> None:
    cache = NamedCache("catalog")
    cache.set("a", 1, 60)

    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert figures("catalog") == (0, 0, 0, 0, 1, 1, 0)


def test_unknown_cache() -> None:
    with pytest.raises(CacheNotFound):
        NamedCache("sessions")


def test_other_backends_count_in_their_own_keys(settings: Any) -> None:
    settings.NOVITAI_CACHES = ["scratch"]
    settings.CACHES = {
        **settings.CACHES,
        "scratch": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    cache = NamedCache("scratch")
    cache.set("a", 1, 60)
    cache.get("a")
    cache.get("b")
    cache.clear()

    assert cache.stats() == CacheStats(
        name="scratch",
        backend="LocMemCache",
        entries=None,
        hits=1,
        misses=1,
        expired=0,
        sets=1,
        deletes=0,
        clears=1,
    )
    assert cache.get("a") is None


# --- the staff API -----------------------------------------------------------------------------


def stats_json(name: str, **figures: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "backend": BACKEND,
        "entries": 0,
        "hits": 0,
        "misses": 0,
        "hit_ratio": 0.0,
        "expired": 0,
        "sets": 0,
        "deletes": 0,
        "clears": 0,
    }
    return {**base, **figures}


def test_cache_stats(staff_client: APIClient) -> None:
    templates = NamedCache("templates")
    templates.set("template:1", {"x": 1}, 60)
    templates.get("template:1")
    templates.get("template:1")
    templates.get("template:2")

    listed = staff_client.get("/api/v1/cache/")
    one = staff_client.get("/api/v1/cache/templates/")

    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()] == ["default", "catalog", "templates", "novita"]
    expected = stats_json("templates", entries=1, hits=2, misses=1, hit_ratio=0.6667, sets=1)
    assert listed.json()[2] == expected
    assert listed.json()[1] == stats_json("catalog")
    assert one.json() == expected


def test_clear_one_cache(staff_client: APIClient) -> None:
    NamedCache("templates").set("a", 1, 60)
    NamedCache("catalog").set("a", 1, 60)

    response = staff_client.delete("/api/v1/cache/templates/")

    assert (response.status_code, response.json()) == (200, {"cleared": ["templates"]})
    assert figures("templates") == (0, 0, 0, 0, 1, 0, 1)
    assert figures("catalog") == (1, 0, 0, 0, 1, 0, 0)


def _foreign_key_in_cache_storage() -> Any:
    """Something in the cache's storage that is not novitai's: it must survive every clear."""
    backend = caches["catalog"]
    if BACKEND == "redis":
        client = backend.client.get_client(write=True)  # type: ignore[attr-defined]
        client.set("celery-like:unrelated", b"1")
        return lambda: client.get("celery-like:unrelated") == b"1"
    path = Path(backend._dir) / "unrelated.txt"  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("1")
    return path.exists


def test_clear_all_caches(staff_client: APIClient) -> None:
    still_there = _foreign_key_in_cache_storage()
    for name in settings.NOVITAI_CACHES:
        NamedCache(name).set("a", 1, 60)

    response = staff_client.delete("/api/v1/cache/")

    assert (response.status_code, response.json()) == (
        200,
        {"cleared": ["default", "catalog", "templates", "novita"]},
    )
    assert [NamedCache(n).entries() for n in settings.NOVITAI_CACHES] == [0, 0, 0, 0]
    assert [NamedCache(n).stats().clears for n in settings.NOVITAI_CACHES] == [1, 1, 1, 1]
    assert still_there()


def test_delete_one_key(staff_client: APIClient) -> None:
    NamedCache("templates").set("template:40117", 1, 60)
    NamedCache("templates").set("template:212", 1, 60)

    response = staff_client.delete("/api/v1/cache/templates/template:40117/")

    assert response.status_code == 204
    assert NamedCache("templates").get("template:212") == 1
    assert figures("templates")[0] == 1
    missing = staff_client.delete("/api/v1/cache/templates/template:40117/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "cache_key_not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/cache/nope/"),
        ("delete", "/api/v1/cache/nope/"),
        ("delete", "/api/v1/cache/nope/key/"),
    ],
)
def test_unknown_cache_name(staff_client: APIClient, method: str, path: str) -> None:
    response = getattr(staff_client, method)(path)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "cache_not_found"
    assert response.json()["error"]["message"] == (
        "No cache named 'nope'. Caches: default, catalog, templates, novita."
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/cache/"),
        ("delete", "/api/v1/cache/"),
        ("get", "/api/v1/cache/catalog/"),
        ("delete", "/api/v1/cache/catalog/"),
        ("delete", "/api/v1/cache/catalog/a/"),
    ],
)
def test_caches_are_for_staff(api_client: APIClient, method: str, path: str) -> None:
    NamedCache("catalog").set("a", 1, 60)

    response = getattr(api_client, method)(path)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert NamedCache("catalog").entries() == 1
