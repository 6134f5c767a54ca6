"""Spot reclaims recovered automatically (on_preempt restart / reprovision), against the sandbox
over HTTP; the provision and action tasks run as a worker would run them."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from instances.actions import instance_action_run
from instances.metrics import SPOT_RECOVERIES
from instances.models import Instance, InstanceEvent, InstanceStatus
from instances.monitoring import MonitorPass, monitor_pass
from novita_sandbox.control import SandboxControl
from tests.instances.conftest import create, create_body
from tests.instances.helpers import (
    monitor_until,
    provision,
    reasons,
    reload,
    upstream_live,
    wait_for,
)
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

WEBHOOK = "https://hooks.example.com/novitai"
S = InstanceStatus


def ready_spot(make: Any, on_preempt: str, **overrides: Any) -> Instance:
    created = make(billing_mode="spot", on_preempt=on_preempt, webhook_url=WEBHOOK, **overrides)
    return monitor_until(provision(created), S.READY)


def webhook_events(instance: Instance, *, notices: bool = False) -> list[str]:
    """Its webhooks, oldest first; the reclaim notice only with `notices` (whether a pass sees
    the short notice of the sandbox's fast timing depends on when passes run)."""
    types = (
        WebhookDelivery.objects.filter(instance_id=instance.pk)
        .order_by("created_at", "id")
        .values_list("event_type", flat=True)
    )
    return [t for t in types if notices or t != "instance.preemption_notice"]


def recoveries_counted(mode: str) -> float:
    return float(SPOT_RECOVERIES.labels(mode=mode)._value.get())


def test_notify_leaves_it_preempted(make: Any, catalog: SandboxControl) -> None:
    instance = ready_spot(make, "notify")
    catalog.reclaim(instance.novita_instance_id)
    preempted = monitor_until(instance, S.PREEMPTED)
    # The reclaim finishes upstream (exited); passes go on; nothing is started or created.
    wait_for(
        lambda: monitor_pass() and reload(instance).upstream_status.startswith("exited"),
        what="the reclaim to finish upstream",
    )
    after = reload(instance)
    assert after.status == S.PREEMPTED
    assert after.recoveries == 0
    assert after.current_job_id == preempted.current_job_id
    assert len(upstream_live(catalog)) == 1
    assert webhook_events(after) == ["instance.ready", "instance.preempted"]


def test_restart_starts_the_same_instance_again(make: Any, catalog: SandboxControl) -> None:
    before = recoveries_counted("restart")
    instance = ready_spot(make, "restart")
    catalog.reclaim(instance.novita_instance_id)

    starting = monitor_until(instance, S.STARTING)
    job = starting.current_job
    assert job is not None
    assert job.kind == "start"
    assert starting.recoveries == 1
    event = InstanceEvent.objects.filter(instance=instance).latest("at", "id")
    assert (event.from_status, event.reason, event.actor) == (
        "preempted",
        "spot_recovery",
        "system",
    )
    assert "recovery 1 of 3" in event.message
    assert recoveries_counted("restart") == before + 1

    instance_action_run(job_id=str(job.pk))
    ready = monitor_until(instance, S.READY)
    assert ready.novita_instance_id == instance.novita_instance_id  # its disk kept
    assert ready.novita_name == instance.novita_name
    assert reasons(ready)[-5:] == ["preempted", "spot_recovery", "start_sent", "running", "healthy"]
    assert webhook_events(ready) == ["instance.ready", "instance.preempted", "instance.ready"]
    assert len(upstream_live(catalog)) == 1


def test_a_refused_restart_goes_back_to_preempted(make: Any, catalog: SandboxControl) -> None:
    instance = ready_spot(make, "restart")
    catalog.set_faults(start_capacity_errors={"*": -1})
    catalog.reclaim(instance.novita_instance_id)
    starting = monitor_until(instance, S.STARTING)
    assert starting.current_job is not None
    instance_action_run(job_id=str(starting.current_job.pk))
    back = reload(instance)
    assert back.status == S.PREEMPTED  # not "stopped": it is still a reclaimed spot instance
    assert reasons(back)[-1] == "start_failed"
    assert back.recoveries == 1


def test_reprovision_replaces_it_elsewhere(make: Any, catalog: SandboxControl) -> None:
    before = recoveries_counted("reprovision")
    instance = ready_spot(make, "reprovision", region="EU-NL-01")
    old_id, old_cluster = instance.novita_instance_id, instance.cluster_id
    catalog.reclaim(old_id)

    pending = monitor_until(instance, S.PENDING)
    assert pending.novita_instance_id == ""
    assert pending.novita_name == f"{instance.novita_name}-r1"
    assert pending.recoveries == 1
    assert pending.ready_at is None
    assert pending.endpoints == []
    assert pending.current_job is not None
    assert pending.current_job.kind == "provision"
    assert recoveries_counted("reprovision") == before + 1
    event = InstanceEvent.objects.filter(instance=instance).latest("at", "id")
    assert event.reason == "spot_recovery"
    assert event.data == {"how": "reprovision", "replaced": old_id, "recovery": 1}
    # The reclaimed instance is deleted upstream in the same pass.
    old = next(i for i in catalog.instances() if i["id"] == old_id)
    assert old["status"] in ("toRemove", "removing", "removed")

    ready = monitor_until(provision(pending), S.READY)
    assert ready.novita_instance_id not in ("", old_id)
    # The reclaimed offer is remembered as short of capacity: the new one is elsewhere.
    assert ready.cluster_id != old_cluster
    assert [i["name"] for i in upstream_live(catalog)] == [ready.novita_name]
    assert webhook_events(ready) == ["instance.ready", "instance.preempted", "instance.ready"]
    # Not two GPUs for one instance at any point after: passes find no duplicate or orphan.
    report = monitor_pass()
    assert report.orphans_deleted == 0
    assert len(upstream_live(catalog)) == 1


def test_restart_with_nothing_left_upstream_reprovisions(
    make: Any, catalog: SandboxControl
) -> None:
    instance = ready_spot(make, "restart")
    # Preempted in a pass, then Novita loses the instance before it is started again.
    Instance.objects.filter(pk=instance.pk).update(status=S.PREEMPTED)
    catalog.vanish(instance.novita_instance_id)
    pending = monitor_until(instance, S.PENDING)
    assert pending.recoveries == 1
    event = InstanceEvent.objects.filter(instance=instance).latest("at", "id")
    assert "nothing left to start" in event.message


def test_recoveries_are_capped(make: Any, catalog: SandboxControl, settings: Any) -> None:
    settings.SPOT_RECOVERY_MAX_ATTEMPTS = 2
    instance = ready_spot(make, "reprovision")
    Instance.objects.filter(pk=instance.pk).update(recoveries=2)
    catalog.reclaim(instance.novita_instance_id)
    preempted = monitor_until(instance, S.PREEMPTED)
    assert (
        "recovery is used up (2 of 2)"
        in InstanceEvent.objects.filter(instance=instance).latest("at", "id").message
    )
    wait_for(
        lambda: monitor_pass() and reload(instance).upstream_status.startswith("exited"),
        what="the reclaim to finish upstream",
    )
    monitor_pass()
    after = reload(instance)
    assert after.status == S.PREEMPTED
    assert after.current_job_id == preempted.current_job_id
    assert after.novita_instance_id == instance.novita_instance_id


def test_on_preempt_needs_a_spot_instance(api_client: APIClient, catalog: SandboxControl) -> None:
    response = create(api_client, create_body(on_preempt="restart"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "on_preempt" in error["details"]
    bad = create(api_client, create_body(billing_mode="spot", on_preempt="migrate"))
    assert bad.status_code == 400
    assert "on_preempt" in bad.json()["error"]["details"]
    assert Instance.objects.count() == 0
    ok = create(api_client, create_body(billing_mode="spot", on_preempt="reprovision"))
    assert ok.status_code == 202
    assert ok.json()["on_preempt"] == "reprovision"
    assert ok.json()["recoveries"] == 0


@pytest.mark.parametrize("on_preempt", ["notify", "restart", "reprovision"])
def test_running_through_the_reclaim_notice_is_not_a_restart(
    make: Any, catalog: SandboxControl, on_preempt: str
) -> None:
    """Novita may report a reclaimed spot instance running (spotStatus reclaiming) for a while:
    a preempted instance must not flap back to health_checking (and preempted again, with a
    second webhook), nor be recovered before the reclaim is over."""
    from novitai.novita.client import get_client
    from novitai.novita.types import NovitaInstance

    instance = ready_spot(make, on_preempt)
    Instance.objects.filter(pk=instance.pk).update(status=S.PREEMPTED)
    row = reload(instance)
    monitor = MonitorPass(get_client())
    monitor.listing.add(
        [
            NovitaInstance(
                id=row.novita_instance_id,
                name=row.novita_name,
                status="running",
                billing_mode="spot",
                spot_status="reclaiming",
            )
        ]
    )
    monitor.decide(row)
    monitor.apply_moves()
    after = reload(instance)
    assert after.status == S.PREEMPTED
    assert after.recoveries == 0
    assert monitor.report.transitions == 0


def test_a_mass_reclaim_marks_the_offer_once(make: Any, catalog: SandboxControl) -> None:
    from catalog.services import catalog_snapshot

    first = ready_spot(make, "reprovision", name="spot-a", region="EU-NL-01")
    second = ready_spot(make, "reprovision", name="spot-b", region="EU-NL-01")
    assert (first.cluster_id, first.novita_product_id) == (
        second.cluster_id,
        second.novita_product_id,
    )
    for row in (first, second):
        catalog.reclaim(row.novita_instance_id)
    ids = {first.novita_instance_id, second.novita_instance_id}
    wait_for(
        lambda: {i["id"] for i in catalog.instances() if i["status"] == "exited"} >= ids,
        what="both reclaims to finish upstream",
    )
    version = catalog_snapshot().version
    report = monitor_pass()  # preempted and recovered in one pass
    assert [reload(row).status for row in (first, second)] == [S.PENDING, S.PENDING]
    assert report.counts[S.PENDING] == 2
    assert catalog_snapshot().version == version + 1  # one write, one invalidation
    # And the replacements are not offered the reclaimed offer.
    ready = monitor_until(provision(reload(first)), S.READY)
    assert ready.cluster_id != first.cluster_id


def test_a_reclaim_notice_is_told_once_with_its_reclaim_time(
    make: Any, catalog: SandboxControl
) -> None:
    instance = ready_spot(make, "notify")
    before = catalog.clock()["now"]
    catalog.reclaim(instance.novita_instance_id, notice=120)
    monitor_pass()
    monitor_pass()  # seen again: told once
    noticed = reload(instance)
    assert noticed.status == S.READY  # it still runs
    assert noticed.spot_reclaim_at is not None
    assert before + 119 <= noticed.spot_reclaim_at.timestamp() <= before + 121
    assert webhook_events(instance, notices=True) == [
        "instance.ready",
        "instance.preemption_notice",
    ]
    delivery = WebhookDelivery.objects.get(event_type="instance.preemption_notice")
    when = noticed.spot_reclaim_at.isoformat().replace("+00:00", "Z")
    assert delivery.payload["data"]["spot_reclaim_at"] == when
    event = noticed.events.get(reason="preemption_notice")
    assert event.message == f"Novita will reclaim the spot instance at {when}."
