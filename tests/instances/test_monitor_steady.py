"""With nothing in transit, a monitoring pass lists Novita only every
MONITOR_STEADY_INTERVAL_SECONDS (drift of ready and stopped instances); anything in transit, or a
ready spot instance (its reclaim notice is in the listing), is looked at every pass."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from instances.models import BillingMode, Instance, InstanceStatus
from instances.monitoring import monitor_pass
from instances.monitoring.passes import LISTED_AT_KEY
from instances.selectors import MONITOR_PASSES_KEY
from novita_sandbox.control import SandboxControl
from tenants.models import Tenant
from tests.instances.test_monitor_batching import fresh, seed
from tests.novita.conftest import api_calls

S = InstanceStatus


@pytest.fixture
def steady(settings: Any, novita: SandboxControl) -> SandboxControl:
    settings.MONITOR_INTERVAL_SECONDS = 3
    settings.MONITOR_STEADY_INTERVAL_SECONDS = 30
    fresh(novita)
    return novita


def listings(sandbox: SandboxControl) -> int:
    return len(api_calls(sandbox, "/gpu/instances", "GET"))


def test_ready_instances_are_listed_every_steady_interval_not_every_pass(
    steady: SandboxControl, tenant: Tenant
) -> None:
    seed(tenant, 3, status=S.READY)
    first = monitor_pass()
    assert (first.steady, first.upstream) == (False, 3)
    before = listings(steady)
    reports = [monitor_pass() for _ in range(5)]
    assert [r.steady for r in reports] == [True] * 5
    assert listings(steady) == before  # nothing sent while nothing is in transit
    cache.set(LISTED_AT_KEY, float(cache.get(LISTED_AT_KEY)) - 30, timeout=None)  # 30 s later
    assert monitor_pass().steady is False
    assert listings(steady) == before + 1


def test_an_instance_in_transit_is_looked_at_every_pass(
    steady: SandboxControl, tenant: Tenant
) -> None:
    seed(tenant, 2, status=S.READY)
    seed(tenant, 1, status=S.STARTING)
    reports = [monitor_pass() for _ in range(3)]
    assert [r.steady for r in reports] == [False] * 3
    assert listings(steady) == 3


def test_a_ready_spot_instance_is_looked_at_every_pass(
    steady: SandboxControl, tenant: Tenant
) -> None:
    (row,) = seed(tenant, 1, status=S.READY)
    Instance.objects.filter(pk=row.pk).update(billing_mode=BillingMode.SPOT)
    reports = [monitor_pass() for _ in range(3)]
    assert [r.steady for r in reports] == [False] * 3


def test_a_steady_pass_still_counts_as_a_live_monitor(
    steady: SandboxControl, tenant: Tenant
) -> None:
    seed(tenant, 1, status=S.READY)
    monitor_pass()
    passes = cache.get(MONITOR_PASSES_KEY)
    assert monitor_pass().steady is True
    assert cache.get(MONITOR_PASSES_KEY) == passes + 1


def test_at_or_below_the_interval_every_pass_lists(
    steady: SandboxControl, tenant: Tenant, settings: Any
) -> None:
    settings.MONITOR_STEADY_INTERVAL_SECONDS = 3
    seed(tenant, 1, status=S.READY)
    assert [monitor_pass().steady for _ in range(3)] == [False] * 3
    assert listings(steady) == 3
