"""Everything novitai caches on the way from a create to ready is JSON (the caches store JSON,
never pickle: tests/novitai/test_cache_json.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from catalog.selectors import OfferSelection, offers_select
from catalog.services import CatalogSnapshot, TemplateConfig, catalog_snapshot, template_get
from instances.models import InstanceStatus
from novitai.novita.client import get_client
from tests.instances.helpers import monitor_until, provision
from tests.stores import cache_contents


@pytest.mark.django_db
def test_everything_novitai_caches_is_json(make: Any, api_client: Any, client: Any) -> None:
    """A create through to ready, reads of the catalog, templates, offers, the health check,
    the breaker opened: then every value in every cache parses as JSON."""
    instance = make()
    monitor_until(provision(instance), InstanceStatus.READY)
    assert api_client.get("/api/v1/products/").status_code == 200
    assert client.get("/health/ready").status_code in (200, 503)
    template = template_get(template_id="212")
    assert TemplateConfig.from_json(template.to_json()) == template
    selection = offers_select(
        product_names=["RTX 4090 24GB"],
        gpu_num=1,
        region=None,
        billing_mode="on_demand",
        max_price_per_hour=None,
        rootfs_size=None,
    )
    assert selection.offers
    assert OfferSelection.from_json(selection.to_json()) == selection
    snapshot = catalog_snapshot()
    assert CatalogSnapshot.from_json(snapshot.to_json()) == snapshot
    breaker = get_client()._breaker
    for _ in range(settings.NOVITA_BREAKER_FAILURE_THRESHOLD):
        breaker.record_failure(breaker.before_call("test"), cause="test")
    assert get_client().breaker_snapshot().state == "open"

    contents = cache_contents()
    assert len(contents) >= 10
    for key, values in contents.items():
        if key.endswith(":__stats__"):  # NamedCache's counters: a Redis hash of integers
            assert all(int(count) >= 0 for count in values[1::2]), key
            continue
        if key.endswith(":ratelimit:bucket"):  # the rate ceiling's Lua-kept hash of two times
            assert set(values[0::2]) <= {b"tat", b"high_until"}, key
            assert all(float(at) > 0 for at in values[1::2]), key
            continue
        for raw in values:
            if key.endswith("_stats.lock"):
                continue  # the file cache's statistics lock: empty
            if key.endswith(".djcache"):  # the file cache: an expiry line, then the value
                header, _, raw = raw.partition(b"\n")
                json.loads(header)
            try:
                json.loads(raw)
            except ValueError:
                raise AssertionError(f"{key} holds {raw[:80]!r}") from None
