"""Catalog fixtures: a catalog that counts as fresh (no sync), and its regions."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.utils import timezone

from catalog.caches import NamedCache
from catalog.models import CatalogState, Region
from tests.catalog.factories import RegionFactory

REGION_CODES = ("EU-NL-01", "EU-DE-01", "US-TX-02", "US-CA-06", "AS-JP-03")


@pytest.fixture
def fresh_catalog(db: None) -> CatalogState:
    """The catalog was synced just now: reads do not call Novita."""
    return CatalogState.objects.create(last_success_at=timezone.now(), last_outcome="success")


@pytest.fixture
def regions(fresh_catalog: CatalogState) -> dict[str, Region]:
    return {
        code: RegionFactory(code=code, cluster_id=code.lower(), name=f"{code} (Somewhere)")
        for code in REGION_CODES
    }


@pytest.fixture(autouse=True)
def _fresh_cache_stats() -> None:
    """Cache statistics survive a clear by design; every catalog test starts them at 0."""
    for name in settings.NOVITAI_CACHES:
        NamedCache(name).stats_reset()
