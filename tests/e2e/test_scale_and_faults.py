"""End to end at scale (50 at once: upstream calls grow with pages) and through a SIGKILL."""

from __future__ import annotations

import math

import pytest
from rest_framework.test import APIClient

from catalog.services import catalog_sync, template_get
from instances.models import Instance, InstanceStatus
from instances.selectors import monitor_passes_count
from novita_sandbox.control import SandboxControl
from tests.e2e.conftest import WORKER_SETTINGS, Worker
from tests.e2e.test_lifecycle import until
from tests.instances.conftest import create, create_body
from tests.instances.helpers import wait_for

pytestmark = [pytest.mark.e2e]

COUNT = 50


def calls(sandbox: SandboxControl, endpoint: str) -> int:
    return sum(sandbox.stats()["calls"].get(endpoint, {}).values())


def test_fifty_at_once_cost_list_pages_not_gets(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    passes_before = monitor_passes_count()
    lists_before = calls(sandbox, "GET /gpu/instances")
    for n in range(COUNT):
        response = create(api_client, create_body(name=f"e2e-many-{n}"))
        assert response.status_code == 202

    def all_ready() -> bool:
        statuses = list(Instance.objects.values_list("status", flat=True))
        assert InstanceStatus.FAILED not in statuses
        return statuses.count(InstanceStatus.READY) == COUNT

    wait_for(all_ready, 90, interval=0.2, what=f"{COUNT} instances ready")
    passes = monitor_passes_count() - passes_before
    lists = calls(sandbox, "GET /gpu/instances") - lists_before
    pages = math.ceil(COUNT / int(WORKER_SETTINGS["NOVITA_LIST_PAGE_SIZE"])) + 1
    assert passes >= 2
    # Every pass lists at most `pages` pages (+ one pass that may be mid-way at either end).
    assert lists <= (passes + 2) * pages, (lists, passes)
    # No get per instance per pass: at most one per instance in its run, for its ssh details
    # and log address, read after it is ready by instances.access_details_read (only the
    # instance's page has them; the sandbox's listing does not).
    assert calls(sandbox, "GET /gpu/instance") <= COUNT
    assert sandbox.stats()["live_instances"] == COUNT
    assert all(n == 1 for n in sandbox.stats()["creates_by_name"].values())


def test_a_worker_killed_mid_provisioning(
    worker: Worker, api_client: APIClient, sandbox: SandboxControl
) -> None:
    # The catalog and the template are read first (the API answers from them without a call),
    # then every Novita call takes 1.5 s: the worker is killed while its create is on the wire.
    assert catalog_sync().outcome == "success"
    template_get(template_id=create_body()["template_id"])
    sandbox.set_faults(latency_ms=1500)
    response = create(api_client, create_body(name="e2e-killed"))
    instance_id = response.json()["id"]
    wait_for(
        lambda: Instance.objects.filter(pk=instance_id, create_sent_at__isnull=False).exists(),
        20,
        interval=0.05,
        what="the create to be on its way",
    )
    worker.kill()
    sandbox.set_faults(latency_ms=0)
    worker.start()
    ready = until(api_client, instance_id, "ready", timeout=60)
    assert ready["job"]["status"] == "succeeded"
    name = f"novitai-{instance_id.replace('-', '')[:12]}"
    assert sandbox.stats()["creates_by_name"] == {name: 1}
    assert sandbox.stats()["live_instances"] == 1
