"""Catalog fixtures: a catalog that counts as fresh (no sync), and its regions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from catalog.caches import NamedCache
from catalog.models import CatalogState, Region
from catalog.services import catalog_sync
from novita_sandbox.control import SandboxControl
from tests.catalog.factories import RegionFactory
from tests.jobs.conftest import sent_tasks  # noqa: F401 (a fixture)

REGION_CODES = ("EU-NL-01", "EU-DE-01", "US-TX-02", "US-CA-06", "AS-JP-03")

# What syncing the sandbox's seed catalog into an empty database does, and costs upstream.
FIRST_SYNC_COUNTS = {
    "regions_created": 5,
    "regions_updated": 0,
    "regions_delisted": 0,
    "products_created": 19,
    "products_updated": 0,
    "products_unavailable": 0,
    "products_unchanged": 0,
}
SEED_CALLS = {"GET /clusters": {"200": 1}, "GET /products": {"200": 5}}


@pytest.fixture
def fresh_catalog(db: None) -> CatalogState:
    """The catalog was synced just now: reads do not call Novita."""
    return CatalogState.objects.create(last_success_at=timezone.now(), last_outcome="success")


@pytest.fixture
def regions(fresh_catalog: CatalogState) -> dict[str, Region]:
    return {
        code: RegionFactory.create(code=code, cluster_id=code.lower(), name=f"{code} (Somewhere)")
        for code in REGION_CODES
    }


@pytest.fixture(autouse=True)
def _fresh_cache_stats() -> None:
    """Cache statistics survive a clear by design; every catalog test starts them at 0."""
    for name in settings.NOVITAI_CACHES:
        NamedCache(name).stats_reset()


@pytest.fixture
def novita(novita_settings: SandboxControl, settings: Any, db: None) -> SandboxControl:
    """The real client against the sandbox, without its request-rate ceiling and retries (a
    failure here is a failure at once)."""
    settings.NOVITA_RATE_LIMIT_PER_SECOND = 10_000.0
    settings.NOVITA_MAX_RETRIES = 0
    return novita_settings


def upstream_calls(sandbox: SandboxControl) -> dict[str, dict[str, int]]:
    """The sandbox's API calls by endpoint and status, e.g. {"GET /clusters": {"200": 1}}."""
    return sandbox.stats()["calls"]


@pytest.fixture
def stale_since(novita: SandboxControl, settings: Any) -> datetime:
    """The catalog was synced from the sandbox one CATALOG_SYNC_INTERVAL_SECONDS ago: stale now."""
    synced = timezone.now() - timedelta(seconds=settings.CATALOG_SYNC_INTERVAL_SECONDS)
    assert catalog_sync(now=synced).outcome == "success"
    return synced
