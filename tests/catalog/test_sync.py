"""The catalog sync, with the real client against the sandbox over HTTP."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.utils import timezone
from prometheus_client import REGISTRY

from catalog.models import CatalogState, Product, Region
from catalog.services import (
    REFRESH_REQUEST_KEY,
    SyncResult,
    _lease_acquire,
    catalog_ensure_fresh,
    catalog_reading,
    catalog_snapshot,
    catalog_state,
    catalog_sync,
    region_code_from_name,
)
from catalog.tasks import catalog_sync_task
from novita_sandbox.control import SandboxControl
from novitai.errors import UpstreamUnavailable
from tests.catalog.conftest import FIRST_SYNC_COUNTS, SEED_CALLS, upstream_calls
from tests.catalog.factories import ProductFactory, RegionFactory
from tests.jobs.conftest import SentTasks


def snapshot() -> dict[str, list[dict[str, Any]]]:
    return {
        "regions": [dict(row) for row in Region.objects.order_by("pk").values()],
        "products": [dict(row) for row in Product.objects.order_by("pk").values()],
    }


def sync_metric(outcome: str) -> float:
    return REGISTRY.get_sample_value("novitai_catalog_sync_total", {"outcome": outcome}) or 0.0


def test_sync_builds_the_catalog(novita: SandboxControl) -> None:
    lines: list[str] = []

    result = catalog_sync(progress=lines.append)

    assert result.outcome == "success"
    assert result.counts() == FIRST_SYNC_COUNTS
    assert lines[:6] == [
        "5 regions",
        "US-TX-02: 5 products",
        "US-CA-06: 4 products",
        "EU-NL-01: 3 products",
        "EU-DE-01: 4 products",
        "AS-JP-03: 3 products",
    ]
    assert list(
        Region.objects.values_list(
            "code", "cluster_id", "name", "supports_network_storage", "supports_instance_network"
        )
    ) == [
        ("AS-JP-03", "as-jp-3", "AS-JP-03 (Osaka)", False, False),
        ("EU-DE-01", "eu-de-1", "EU-DE-01 (Frankfurt)", False, False),
        ("EU-NL-01", "eu-nl-1", "EU-NL-01 (Amsterdam)", True, False),
        ("US-CA-06", "us-ca-6", "US-CA-06 (California)", True, False),
        ("US-TX-02", "us-tx-2", "US-TX-02 (Dallas)", True, True),
    ]
    assert Region.objects.get(code="EU-NL-01").gpu_types == [
        "L40S 48GB",
        "RTX 3090 24GB",
        "RTX 4090 24GB",
    ]
    rows = {(p.novita_id, p.region.code): p for p in Product.objects.select_related("region").all()}
    assert len(rows) == 19
    p4090 = rows[("4090.16c62g.sim", "EU-NL-01")]
    assert (
        p4090.name,
        p4090.cpu_per_gpu,
        p4090.memory_per_gpu,
        p4090.disk_per_gpu,
        p4090.price,
        p4090.spot_price,
        p4090.monthly_prices,
        p4090.billing_methods,
        p4090.available,
        p4090.inventory_state,
        p4090.min_rootfs,
        p4090.max_rootfs,
        p4090.available_gpu_number,
        p4090.capacity_failed_until,
    ) == (
        "RTX 4090 24GB",
        16,
        62,
        200,
        34000,
        17000,
        [{"month": 1, "price": 21500000}, {"month": 3, "price": 61000000}],
        ["onDemand", "monthly", "spot"],
        True,
        "low",
        10,
        1000,
        None,
        None,
    )
    p3090 = rows[("3090.8c31g.sim", "US-TX-02")]
    assert (p3090.available, p3090.inventory_state, p3090.max_rootfs) == (False, "none", 500)
    l40s = rows[("l40s.16c120g.sim", "EU-NL-01")]
    assert (l40s.spot_price, l40s.billing_methods) == (0, ["onDemand", "monthly"])
    state = catalog_state()
    assert (state.last_outcome, state.last_error, state.lease_token) == ("success", "", "")
    assert state.last_success_at is not None
    assert state.version == 1
    assert upstream_calls(novita) == SEED_CALLS


def test_sync_twice_changes_nothing(novita: SandboxControl) -> None:
    catalog_sync()
    before = snapshot()
    version = catalog_state().version

    result = catalog_sync()

    assert result.outcome == "success"
    assert result.counts() == {
        **dict.fromkeys(FIRST_SYNC_COUNTS, 0),
        "products_unchanged": 19,
    }
    assert snapshot() == before  # fetched_at included: nothing was written
    assert catalog_state().version == version


def test_sync_updates_what_changed_upstream(novita: SandboxControl) -> None:
    catalog_sync()
    before = {p["id"]: p for p in snapshot()["products"]}
    version = catalog_state().version
    novita.set_offer("us-tx-2", "3090.8c31g.sim", "high")  # was "none"

    result = catalog_sync()

    assert (result.products_created, result.products_updated, result.products_unchanged) == (
        0,
        1,
        18,
    )
    row = Product.objects.get(novita_id="3090.8c31g.sim", region__cluster_id="us-tx-2")
    assert (row.available, row.inventory_state) == (True, "high")
    assert row.fetched_at > before[row.pk]["fetched_at"]
    after = {p["id"]: p for p in snapshot()["products"]}
    assert {pk for pk in after if after[pk] != before[pk]} == {row.pk}
    assert catalog_state().version == version + 1


def test_sync_adds_a_product_offered_in_a_new_region(novita: SandboxControl) -> None:
    catalog_sync()
    novita.set_offer("as-jp-3", "4090.16c62g.sim", "normal")

    result = catalog_sync()

    assert (result.products_created, result.products_updated) == (1, 0)
    assert list(
        Product.objects.filter(novita_id="4090.16c62g.sim")
        .order_by("region__code")
        .values_list("region__code", "inventory_state")
    ) == [("AS-JP-03", "normal"), ("EU-NL-01", "low"), ("US-CA-06", "normal"), ("US-TX-02", "high")]


def test_what_novita_no_longer_lists_is_marked_unavailable_not_deleted(
    novita: SandboxControl,
) -> None:
    # The sandbox never drops a product or a region: rows of ones it does not have stand in.
    gone_region = RegionFactory.create(code="EU-XX-09", cluster_id="eu-xx-9")
    gone_product = ProductFactory.create(
        novita_id="t4.4c16g.sim", name="Tesla T4", region=gone_region, inventory_state="high"
    )
    nl = RegionFactory.create(code="EU-NL-01", cluster_id="eu-nl-1", name="EU-NL-01 (Amsterdam)")
    gone_here = ProductFactory.create(
        novita_id="4080s.12c46g.sim", name="RTX 4080 SUPER", region=nl
    )

    result = catalog_sync()

    assert (result.regions_created, result.regions_delisted) == (4, 1)
    assert (result.products_created, result.products_unavailable) == (19, 2)
    gone_region.refresh_from_db()
    gone_product.refresh_from_db()
    gone_here.refresh_from_db()
    assert (gone_region.listed, gone_product.available, gone_here.available) == (
        False,
        False,
        False,
    )
    assert (gone_product.inventory_state, gone_product.price) == ("high", 34000)
    assert Product.objects.count() == 21

    again = catalog_sync()

    assert (again.regions_delisted, again.products_unavailable, again.products_unchanged) == (
        0,
        0,
        19,
    )


def test_sync_failure_leaves_the_catalog_and_reports(
    novita: SandboxControl, caplog: pytest.LogCaptureFixture
) -> None:
    catalog_sync()
    before = snapshot()
    state = catalog_state()
    failures = sync_metric("failure")
    novita.set_offer("us-tx-2", "3090.8c31g.sim", "high")  # a change the failed sync must not write
    novita.set_faults(fail_next=[{"path": "/products", "status": 500, "count": -1}])

    with caplog.at_level(logging.ERROR, logger="catalog.services"):
        result = catalog_sync()

    assert result.outcome == "failure"
    assert "status=500" in result.error
    assert snapshot() == before
    after = catalog_state()
    assert (after.last_outcome, after.last_success_at, after.version, after.lease_token) == (
        "failure",
        state.last_success_at,
        state.version,
        "",
    )
    assert "status=500" in after.last_error
    assert sync_metric("failure") == failures + 1
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.levelno >= 40] == [
        "catalog sync failed; the previous catalog stays in place"
    ]


def test_a_second_sync_while_one_runs_is_skipped(novita: SandboxControl) -> None:
    now = timezone.now()
    assert _lease_acquire("the-other-sync", now)
    skipped = sync_metric("skipped")

    result = catalog_sync(now=now + timedelta(seconds=1))

    assert result == SyncResult(outcome="skipped")
    assert upstream_calls(novita) == {}
    assert Region.objects.count() == 0
    assert sync_metric("skipped") == skipped + 1
    assert catalog_state().lease_token == "the-other-sync"


def test_a_lease_left_by_a_killed_sync_expires(novita: SandboxControl) -> None:
    now = timezone.now()
    assert _lease_acquire("killed", now - timedelta(seconds=301))

    result = catalog_sync(now=now)

    assert result.outcome == "success"
    assert catalog_state().lease_token == ""


def test_a_stale_catalog_is_read_as_it_is_and_a_sync_is_sent(
    novita: SandboxControl,
    settings: Any,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Only the first catalog is fetched by a reader; a stale one is read as it is (a request
    never waits on Novita for a refresh) and one catalog.sync task is sent, not one per read."""
    settings.CATALOG_SYNC_INTERVAL_SECONDS = 600
    now = timezone.now()

    catalog_ensure_fresh(now=now)  # never synced: fetched now
    catalog_ensure_fresh(now=now + timedelta(seconds=599))

    assert upstream_calls(novita) == SEED_CALLS
    assert sent_tasks.calls == []

    with django_capture_on_commit_callbacks(execute=True):
        catalog_ensure_fresh(now=now + timedelta(seconds=600))
        catalog_ensure_fresh(now=now + timedelta(seconds=601))

    assert upstream_calls(novita) == SEED_CALLS  # no Novita call from the reader
    assert sent_tasks.names_and_args == [("catalog.sync", [])]  # once, within the minute
    assert catalog_state().last_success_at == now

    caches["catalog"].delete(REFRESH_REQUEST_KEY)  # a minute later (REFRESH_REQUEST_SECONDS)
    with django_capture_on_commit_callbacks(execute=True):
        catalog_ensure_fresh(now=now + timedelta(seconds=700))

    assert sent_tasks.names_and_args == [("catalog.sync", []), ("catalog.sync", [])]


def test_a_stale_catalog_is_refreshed_by_the_task_it_sends(
    novita: SandboxControl,
    stale_since: datetime,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        catalog_ensure_fresh()
    ((name, _, _),) = sent_tasks.calls
    assert catalog_sync_task.name == name
    assert catalog_sync_task.apply().get() == "success"

    refreshed = catalog_state().last_success_at
    assert refreshed is not None
    assert refreshed > stale_since
    assert upstream_calls(novita) == {"GET /clusters": {"200": 2}, "GET /products": {"200": 10}}


def test_without_the_broker_a_stale_catalog_is_still_read(
    novita: SandboxControl,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from novitai.celery import app

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    now = timezone.now()
    catalog_sync(now=now)
    monkeypatch.setattr(app, "send_task", broker_down)

    with django_capture_on_commit_callbacks(execute=True) as sent:
        catalog_ensure_fresh(now=now + timedelta(seconds=settings.CATALOG_SYNC_INTERVAL_SECONDS))

    assert len(sent) == 1  # the wake-up was attempted, and its failure swallowed
    assert upstream_calls(novita) == SEED_CALLS
    assert Product.objects.filter(available=True).count() == 16


def test_reads_in_one_block_share_one_check_and_one_snapshot(
    novita: SandboxControl, django_assert_num_queries: Any
) -> None:
    catalog_ensure_fresh()
    with catalog_reading() as pinned:
        # Another process moves the version on: the block keeps reading its own snapshot.
        CatalogState.objects.filter(pk=CatalogState.SINGLETON_ID).update(version=pinned.version + 1)
        caches["catalog"].clear()
        with django_assert_num_queries(0):
            catalog_ensure_fresh()
            assert catalog_snapshot() is pinned
            with catalog_reading() as nested:
                assert nested is pinned
    assert catalog_snapshot().version == pinned.version + 1
    assert upstream_calls(novita) == SEED_CALLS


def test_a_stale_catalog_whose_sync_fails_is_still_used(
    novita: SandboxControl,
    stale_since: datetime,
    sent_tasks: SentTasks,
    django_capture_on_commit_callbacks: Any,
) -> None:
    novita.set_faults(fail_next=[{"path": "/clusters", "status": 503, "count": -1}])

    with django_capture_on_commit_callbacks(execute=True):
        catalog_ensure_fresh()
        assert catalog_sync_task.apply().get() == "failure"
        catalog_ensure_fresh()  # asked for within the minute: not again

    assert catalog_state().last_outcome == "failure"
    assert catalog_state().last_success_at == stale_since
    assert Product.objects.filter(available=True).count() == 16
    assert sent_tasks.names_and_args == [("catalog.sync", [])]


def test_ensure_fresh_without_any_catalog_and_novita_down(novita: SandboxControl) -> None:
    novita.set_faults(fail_next=[{"path": "/clusters", "status": 503, "count": -1}])

    with pytest.raises(UpstreamUnavailable):
        catalog_ensure_fresh()

    assert Region.objects.count() == 0


def test_beat_runs_the_sync_task(novita: SandboxControl, settings: Any) -> None:
    assert settings.CELERY_BEAT_SCHEDULE["catalog.sync"] == {
        "task": "catalog.sync",
        "schedule": float(settings.CATALOG_SYNC_INTERVAL_SECONDS),
        "options": {"expires": float(settings.CATALOG_SYNC_INTERVAL_SECONDS)},
    }
    assert catalog_sync_task.name == "catalog.sync"

    assert catalog_sync_task.apply().get() == "success"
    assert Product.objects.count() == 19


def test_sync_command_shows_progress(novita: SandboxControl) -> None:
    out = StringIO()

    call_command("catalog_sync", stdout=out)

    assert out.getvalue().splitlines() == [
        "5 regions",
        "US-TX-02: 5 products",
        "US-CA-06: 4 products",
        "EU-NL-01: 3 products",
        "EU-DE-01: 4 products",
        "AS-JP-03: 3 products",
        "done: regions created 5, regions updated 0, regions delisted 0, products created 19, "
        "products updated 0, products unavailable 0, products unchanged 0",
    ]


def test_sync_command_fails_loudly(novita: SandboxControl) -> None:
    novita.set_faults(fail_next=[{"path": "/clusters", "status": 500, "count": -1}])

    with pytest.raises(CommandError, match="catalog sync failed"):
        call_command("catalog_sync", stdout=StringIO())

    assert CatalogState.objects.get().last_outcome == "failure"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("EU-NL-01 (Amsterdam)", "EU-NL-01"),
        ("US-CA-06", "US-CA-06"),
        ("  us-ca-06  (California) ", "US-CA-06"),
        ("Asia Pacific 1", "ASIA-PACIFIC-1"),
    ],
)
def test_region_code_from_display_name(name: str, code: str) -> None:
    assert region_code_from_name(name) == code


def test_first_catalog_waits_for_the_sync_another_process_runs(
    novita: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog import services

    now = timezone.now()
    assert _lease_acquire("other-process", now)
    waits: list[float] = []

    def other_process_finishes(seconds: float) -> None:
        waits.append(seconds)
        services._lease_release("other-process", last_success_at=now, last_outcome="success")

    monkeypatch.setattr(services.time, "sleep", other_process_finishes)

    catalog_ensure_fresh(now=now)

    assert waits == [0.2]
    assert upstream_calls(novita) == {}  # this process did not fetch it a second time


def test_first_catalog_wait_gives_up(
    novita: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog import services

    assert _lease_acquire("other-process", timezone.now())
    monkeypatch.setattr(services, "FIRST_SYNC_WAIT_SECONDS", 0.0)

    with pytest.raises(UpstreamUnavailable):
        catalog_ensure_fresh()

    assert upstream_calls(novita) == {}


def test_a_new_cluster_takes_the_code_of_one_novita_dropped(novita: SandboxControl) -> None:
    old = RegionFactory.create(code="EU-NL-01", cluster_id="eu-nl-old")

    result = catalog_sync()

    assert (result.regions_created, result.regions_delisted) == (5, 1)
    old.refresh_from_db()
    assert (old.code, old.listed) == ("EU-NL-OLD", False)
    assert Region.objects.get(code="EU-NL-01").cluster_id == "eu-nl-1"
