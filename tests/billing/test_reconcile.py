"""Reconciliation against the sandbox's bill/list: the ledger agrees with the bill; with the
sandbox's prices changed behind novitai's back, the drift is an event, a metric and a row."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from billing.models import Drift
from instances.models import Instance
from instances.money import ledger_reconcile_run
from instances.monitoring import monitor_pass
from tests.instances.helpers import monitor_until, provision, reasons, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def run_for(seconds: float) -> None:
    """Monitoring passes for that long (the ledger follows what they see)."""
    until = time.monotonic() + seconds
    wait_for(lambda: monitor_pass() and time.monotonic() >= until, seconds + 30, interval=0.1)


def drifts_counted() -> float:
    return REGISTRY.get_sample_value("novitai_ledger_drifts_total") or 0.0


def test_the_ledger_agrees_then_drifts_when_prices_change(make: Any, catalog: Any) -> None:
    start = timezone.now() - timedelta(seconds=5)
    ready = monitor_until(provision(make(name="steady")), "ready")
    run_for(2)
    assert ledger_reconcile_run(start=start, end=timezone.now()) == []
    assert Drift.objects.count() == 0
    counted = drifts_counted()
    # A hundred times the price, from now on, behind novitai's back.
    catalog.set_prices("4090.16c62g.sim", price=3_400_000)
    changed = timezone.now()
    run_for(3)
    assert ledger_reconcile_run(start=start, end=timezone.now()) == [ready.pk]
    drift = Drift.objects.get()
    assert drift.billed_usd > drift.ledger_usd
    assert drifts_counted() == counted + 1
    assert reasons(Instance.objects.get(pk=ready.pk))[-1] == "ledger_drift"
    assert changed < drift.found_at
