"""The provision task and the monitoring pass, called directly, against the sandbox over HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import urllib3
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import Product
from instances.models import FailureReason, Instance, InstanceEvent, InstanceStatus
from instances.selectors import instance_representation
from jobs.models import Job, JobStatus
from novita_sandbox.control import SandboxControl
from novitai.novita.client import get_client
from novitai.novita.types import CreateInstanceRequest
from tests.instances.conftest import PRODUCT, create, create_body
from tests.instances.helpers import (
    monitor_until,
    provision,
    reasons,
    reload,
    timeless,
    upstream_live,
    wait_for,
)
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

WEBHOOK = "https://hooks.example.com/novitai"


def upstream_create(name: str) -> str:
    """An instance created on Novita behind novitai's back (a create landing late, a
    duplicate, an orphan): its id."""
    return get_client().create_instance(
        CreateInstanceRequest(
            name=name,
            product_id="4090.16c62g.sim",
            gpu_num=1,
            rootfs_size=60,
            image_url="ghcr.io/example/comfyui:latest",
            cluster_id="us-tx-2",
        )
    )


def job_of(instance: Instance) -> Job:
    job = reload(instance).current_job
    assert job is not None
    return job


def test_create_to_ready(make: Any, catalog: SandboxControl) -> None:
    instance = make(webhook_url=WEBHOOK, region="EU-NL-01")
    instance = provision(instance)
    assert instance.status == InstanceStatus.STARTING
    assert instance.novita_instance_id
    assert instance.create_sent_at is None
    assert (instance.product_name, instance.region) == (PRODUCT, "EU-NL-01")
    assert instance.price_per_hour is not None
    assert instance.current_job is not None
    assert instance.current_job.status == JobStatus.WAITING

    ready = monitor_until(instance, InstanceStatus.READY)
    assert ready.ready_at is not None
    assert ready.endpoints == [
        {"port": 8188, "type": "http", "url": ready.endpoints[0]["url"], "healthy": True}
    ]
    assert ready.endpoints[0]["url"].startswith("http://127.0.0.1:")
    assert ready.current_job is not None
    assert ready.current_job.status == JobStatus.SUCCEEDED
    assert reasons(ready) == [
        "requested",
        "provisioning_started",
        "created",
        "running",
        "healthy",
    ]
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "instance.ready"
    assert delivery.target_url == WEBHOOK
    assert delivery.instance_id == ready.pk
    assert timeless(delivery.payload["data"]) == timeless(instance_representation(ready))
    assert delivery.payload["data"]["job"]["status"] == "succeeded"
    created = catalog.instances()
    assert [(i["name"], i["clusterId"]) for i in created] == [(ready.novita_name, "eu-nl-1")]


def test_capacity_error_moves_to_the_next_offer(make: Any, catalog: SandboxControl) -> None:
    catalog.set_faults(capacity_errors={"eu-nl-1": -1})
    instance = provision(make(region="EU-NL-01"))
    assert instance.status == InstanceStatus.STARTING
    assert instance.region != "EU-NL-01"
    tried = instance.offers_tried
    assert [(t["region"], t["outcome"]) for t in tried] == [("EU-NL-01", "no_capacity")]
    assert reasons(instance)[-2:] == ["offer_no_capacity", "created"]
    product = Product.objects.get(name=PRODUCT, region__code="EU-NL-01")
    assert product.capacity_failed_until is not None
    assert len(catalog.instances()) == 1


def test_no_capacity_anywhere_fails(make: Any, catalog: SandboxControl, settings: Any) -> None:
    settings.PROVISION_MAX_OFFERS = 2
    catalog.set_faults(capacity_errors={"*": -1})
    instance = provision(make(webhook_url=WEBHOOK))
    assert instance.status == InstanceStatus.FAILED
    assert instance.failure_reason == FailureReason.NO_CAPACITY
    assert "2 offer(s) tried" in instance.failure_message
    assert instance.released_at is not None  # nothing was ever created
    assert instance.current_job is not None
    assert instance.current_job.status == JobStatus.FAILED
    assert catalog.instances() == []
    assert WebhookDelivery.objects.get().event_type == "instance.failed"


def test_a_lost_create_answer_is_found_by_name(make: Any, catalog: SandboxControl) -> None:
    catalog.set_faults(lose_create_answers=1, lose_create_mode="close")
    instance = provision(make())
    assert instance.status == InstanceStatus.STARTING
    assert "create_outcome_unknown" in reasons(instance)
    assert "create_found_by_name" in reasons(instance)
    assert catalog.stats()["creates_by_name"] == {instance.novita_name: 1}
    assert [i["id"] for i in catalog.instances()] == [instance.novita_instance_id]


def test_not_found_yet_waits_for_the_grace_period_then_the_monitor_adopts(
    make: Any, catalog: SandboxControl
) -> None:
    catalog.set_faults(lose_create_answers=1, lose_create_mode="close", list_lag_s=0.5)
    instance = provision(make())
    assert instance.status == InstanceStatus.PROVISIONING
    assert instance.create_sent_at is not None
    job = job_of(instance)
    assert job.status == JobStatus.PENDING
    assert job.attempts == 0  # a wait, not a failure
    assert job.next_attempt_at >= instance.create_sent_at + timedelta(seconds=59)
    # The listing shows it once the lag is over: the monitoring pass adopts it by name.
    adopted = monitor_until(instance, InstanceStatus.STARTING, InstanceStatus.HEALTH_CHECKING)
    assert adopted.novita_instance_id == catalog.instances()[0]["id"]
    # The deferred provision job, when it runs, only hands over.
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    provision(adopted)
    assert Job.objects.get(pk=job.pk).status in (JobStatus.WAITING, JobStatus.SUCCEEDED)
    assert catalog.stats()["creates_by_name"] == {instance.novita_name: 1}


def test_a_create_that_never_happened_is_retried_after_the_grace_period(
    make: Any, catalog: SandboxControl, settings: Any
) -> None:
    catalog.set_faults(
        fail_next=[{"path": "/gpu/instance/create", "count": 1, "status": 502, "drop": True}]
    )
    instance = provision(make())
    assert instance.status == InstanceStatus.PROVISIONING
    assert instance.create_sent_at is not None
    assert catalog.instances() == []
    # The grace period is over and still nothing under the name: create again, once.
    past = timezone.now() - timedelta(seconds=settings.CREATE_UNKNOWN_GRACE_SECONDS + 1)
    Instance.objects.filter(pk=instance.pk).update(create_sent_at=past)
    Job.objects.filter(pk=job_of(instance).pk).update(next_attempt_at=timezone.now())
    instance = provision(instance)
    assert instance.status == InstanceStatus.STARTING
    assert "create_not_found" in reasons(instance)
    assert len(catalog.instances()) == 1


def test_rate_limited_create_retries_later(make: Any, catalog: SandboxControl) -> None:
    catalog.set_faults(
        fail_next=[{"path": "/gpu/instance/create", "count": 1, "status": 429, "retry_after": 30}]
    )
    instance = provision(make())
    assert instance.status == InstanceStatus.PROVISIONING
    assert instance.create_sent_at is None
    job = job_of(instance)
    assert job.status == JobStatus.PENDING
    assert job.next_attempt_at >= timezone.now() + timedelta(seconds=25)
    assert "429" in job.last_error or "rate" in job.last_error.lower()
    assert catalog.instances() == []


def test_an_absurd_retry_after_reschedules_the_create_within_the_cap(
    make: Any, catalog: SandboxControl
) -> None:
    """Retry-After: 300000000000 (about 9,500 years) is read as the cap, six hours: the job used to
    be rescheduled past the year 9999 — an OverflowError out of the task, the job left running."""
    catalog.set_faults(
        fail_next=[
            {"path": "/gpu/instance/create", "count": 1, "status": 429, "retry_after": 3 * 10**11}
        ]
    )
    before = timezone.now()
    instance = provision(make())
    job = job_of(instance)
    assert (instance.status, job.status) == (InstanceStatus.PROVISIONING, JobStatus.PENDING)
    assert before + timedelta(hours=6) <= job.next_attempt_at <= timezone.now() + timedelta(hours=6)
    assert catalog.instances() == []


def test_novita_quota_fails_without_retry(make: Any, catalog: SandboxControl) -> None:
    catalog.set_faults(
        fail_next=[
            {
                "path": "/gpu/instance/create",
                "count": 1,
                "status": 400,
                "reason": "BALANCE_NOT_ENOUGH",
                "message": "balance not enough",
            }
        ]
    )
    instance = provision(make())
    assert (instance.status, instance.failure_reason) == (
        InstanceStatus.FAILED,
        FailureReason.QUOTA_EXCEEDED,
    )
    assert catalog.instances() == []


def test_a_job_that_keeps_dying_fails_with_cleanup(make: Any, catalog: SandboxControl) -> None:
    instance = make()
    Job.objects.filter(pk=job_of(instance).pk).update(attempts=5, max_attempts=5)
    instance = provision(instance)
    assert (instance.status, instance.failure_reason) == (
        InstanceStatus.FAILED,
        FailureReason.UPSTREAM_ERROR,
    )
    assert job_of(instance).status == JobStatus.FAILED


def test_image_pull_failure_fails_and_deletes_upstream(make: Any, catalog: SandboxControl) -> None:
    catalog.set_faults(pull_fail_next=1)
    instance = provision(make(webhook_url=WEBHOOK))
    failed = monitor_until(instance, InstanceStatus.FAILED)
    assert failed.failure_reason == FailureReason.IMAGE_PULL_FAILED
    assert "pull" in failed.failure_message
    released = wait_for(lambda: monitor_and_reload(failed).released_at, what="released")
    assert released
    assert upstream_live(catalog) == []
    assert "released" in reasons(failed)


def monitor_and_reload(instance: Instance) -> Instance:
    from instances.monitoring import monitor_pass

    monitor_pass()
    return reload(instance)


def test_app_never_healthy_times_out_and_deletes_upstream(
    make: Any, catalog: SandboxControl, settings: Any
) -> None:
    instance = make()
    catalog.set_faults(unhealthy_name=instance.novita_name)
    instance = monitor_until(provision(instance), InstanceStatus.HEALTH_CHECKING)
    assert instance.endpoints[0]["healthy"] is False  # checked in the same pass
    assert monitor_and_reload(instance).status == InstanceStatus.HEALTH_CHECKING
    Instance.objects.filter(pk=instance.pk).update(phase_deadline_at=timezone.now())
    failed = monitor_until(instance, InstanceStatus.FAILED)
    assert failed.failure_reason == FailureReason.HEALTH_CHECK_TIMEOUT
    wait_for(lambda: monitor_and_reload(failed).released_at, what="released")
    assert upstream_live(catalog) == []


def test_startup_deadline(make: Any, catalog: SandboxControl) -> None:
    catalog.set_timing(pulling=30)
    instance = provision(make())
    Instance.objects.filter(pk=instance.pk).update(phase_deadline_at=timezone.now())
    failed = monitor_until(instance, InstanceStatus.FAILED)
    assert failed.failure_reason == FailureReason.STARTUP_TIMEOUT
    wait_for(lambda: monitor_and_reload(failed).released_at, what="released")
    assert upstream_live(catalog) == []


def test_stop_start_restart_delete(
    make: Any, api_client: APIClient, catalog: SandboxControl
) -> None:
    from instances.actions import instance_action_run

    instance = monitor_until(provision(make(webhook_url=WEBHOOK)), InstanceStatus.READY)
    path = f"/api/v1/instances/{instance.pk}/"

    def act(verb: str, *target: str) -> Instance:
        response = (
            api_client.delete(path) if verb == "delete" else api_client.post(path + verb + "/")
        )
        assert response.status_code == 202, response.content
        instance_action_run(job_id=response.json()["job"]["id"])
        return monitor_until(instance, *target)

    stopped = act("stop", InstanceStatus.STOPPED)
    assert stopped.stopped_at is not None
    assert stopped.endpoints[0]["healthy"] is False
    assert stopped.current_job is not None
    assert stopped.current_job.status == JobStatus.SUCCEEDED
    ready = act("start", InstanceStatus.READY)
    assert ready.current_job is not None
    assert ready.current_job.kind == "start"
    assert ready.current_job.status == JobStatus.SUCCEEDED
    restarted = act("restart", InstanceStatus.READY)
    assert restarted.current_job is not None
    assert restarted.current_job.kind == "restart"
    assert restarted.current_job.status == JobStatus.SUCCEEDED
    gone = act("delete", InstanceStatus.TERMINATED)
    assert gone.terminated_at is not None
    assert catalog.stats()["live_instances"] == 0
    assert [d.event_type for d in WebhookDelivery.objects.order_by("created_at")] == [
        "instance.ready",
        "instance.stopped",
        "instance.ready",
        "instance.ready",
        "instance.terminated",
    ]
    history = [
        (e.from_status, e.to_status)
        for e in InstanceEvent.objects.filter(instance=instance).order_by("at", "id")
        if e.from_status != e.to_status
    ]
    assert history == [
        ("", "pending"),
        ("pending", "provisioning"),
        ("provisioning", "starting"),
        ("starting", "health_checking"),
        ("health_checking", "ready"),
        ("ready", "stopping"),
        ("stopping", "stopped"),
        ("stopped", "starting"),
        ("starting", "health_checking"),
        ("health_checking", "ready"),
        ("ready", "restarting"),
        ("restarting", "health_checking"),
        ("health_checking", "ready"),
        ("ready", "terminating"),
        ("terminating", "terminated"),
    ]


def test_delete_while_the_create_is_in_flight_leaves_nothing(
    make: Any, api_client: APIClient, catalog: SandboxControl, settings: Any
) -> None:
    """The delete arrives between the create's intent and its answer: the create still lands
    under our name; the teardown finds it by name and deletes it before `terminated`."""
    from instances.actions import instance_action_run

    instance = make()
    Instance.objects.filter(pk=instance.pk).update(
        status=InstanceStatus.PROVISIONING, create_sent_at=timezone.now()
    )
    response = api_client.delete(f"/api/v1/instances/{instance.pk}/")
    instance_action_run(job_id=response.json()["job"]["id"])
    assert reload(instance).status == InstanceStatus.TERMINATING
    # The in-flight create lands now.
    upstream_create(instance.novita_name)
    # Within the grace period nothing is concluded without a look by name...
    gone = monitor_until(instance, InstanceStatus.TERMINATED, timeout=15)
    assert upstream_live(catalog) == []
    assert "delete_requested" in reasons(gone)


def test_delete_before_any_create_is_immediate(
    make: Any, api_client: APIClient, catalog: SandboxControl
) -> None:
    from instances.actions import instance_action_run

    instance = make()
    response = api_client.delete(f"/api/v1/instances/{instance.pk}/")
    instance_action_run(job_id=response.json()["job"]["id"])
    assert reload(instance).status == InstanceStatus.TERMINATED
    provision(instance)  # the cancelled provision job does nothing
    assert catalog.instances() == []


def test_spot_reclaim_is_preempted(make: Any, catalog: SandboxControl) -> None:
    instance = monitor_until(
        provision(make(billing_mode="spot", webhook_url=WEBHOOK)), InstanceStatus.READY
    )
    catalog.reclaim(instance.novita_instance_id)
    preempted = monitor_until(instance, InstanceStatus.PREEMPTED)
    assert preempted.stopped_at is not None
    assert WebhookDelivery.objects.filter(event_type="instance.preempted").count() == 1


def test_vanished_upstream_fails(make: Any, catalog: SandboxControl) -> None:
    instance = monitor_until(provision(make(webhook_url=WEBHOOK)), InstanceStatus.READY)
    catalog.vanish(instance.novita_instance_id)
    failed = monitor_until(instance, InstanceStatus.FAILED)
    assert failed.failure_reason == FailureReason.UPSTREAM_VANISHED
    wait_for(lambda: monitor_and_reload(failed).released_at, what="released")


def test_orphans_are_deleted_after_the_grace_period(catalog: SandboxControl, settings: Any) -> None:
    from instances.metrics import ORPHANS_DELETED
    from instances.monitoring import monitor_pass

    orphan_id = upstream_create("novitai-0123456789ab")
    foreign_id = upstream_create("someone-elses")
    settings.ORPHAN_GRACE_SECONDS = 3600
    assert monitor_pass().orphans_deleted == 0  # first seen now
    settings.ORPHAN_GRACE_SECONDS = 0
    before = ORPHANS_DELETED._value.get()
    assert monitor_pass().orphans_deleted == 1
    assert ORPHANS_DELETED._value.get() == before + 1
    statuses = {i["id"]: i["status"] for i in catalog.instances()}
    assert statuses[orphan_id] in ("toRemove", "removing", "removed")
    assert statuses[foreign_id] not in ("toRemove", "removing", "removed")


def test_the_pass_lists_pages_and_gets_nothing(
    api_client: APIClient, catalog: SandboxControl, settings: Any
) -> None:
    from instances.monitoring import monitor_pass

    settings.NOVITA_LIST_PAGE_SIZE = 5
    for n in range(12):
        assert create(api_client, create_body(name=f"n{n}")).status_code == 202
    for instance in Instance.objects.all():
        provision(instance)

    def calls_of_a_pass() -> tuple[int, int]:
        before = catalog.stats()["calls"]
        monitor_pass()
        after = catalog.stats()["calls"]

        def delta(endpoint: str) -> int:
            return sum(after.get(endpoint, {}).values()) - sum(before.get(endpoint, {}).values())

        return delta("GET /gpu/instances"), delta("GET /gpu/instance")

    # No instance's own page is read by the passes (the listing has the endpoints; the ssh
    # details are instances.access_details_read's, at low priority).
    total_gets = 0
    for _ in range(200):
        lists, gets = calls_of_a_pass()
        # 12 instances, 5 a page: 3 pages (+1 while the client learns the sandbox's page base).
        assert lists in (3, 4)
        total_gets += gets
        if not Instance.objects.exclude(status=InstanceStatus.READY).exists():
            break
    assert total_gets == 0
    assert calls_of_a_pass() == (3, 0)
    assert calls_of_a_pass() == (3, 0)


def test_a_pass_holding_the_lock_keeps_others_out() -> None:
    from instances.monitoring import LOCK_NAME, monitor_pass
    from novitai.locks import held_lock

    with held_lock(LOCK_NAME) as held:
        assert held is True
        assert monitor_pass().skipped is True
    with held_lock(LOCK_NAME) as held:
        assert held is True  # the skipped pass took nothing


def test_a_tick_skipped_during_a_pass_makes_it_go_again(catalog: SandboxControl) -> None:
    """The beat's tick that found the lock taken is not lost: the pass holding the lock says to
    run the next pass at once instead of waiting one more interval."""
    from instances.monitoring import LOCK_NAME, monitor_pass
    from novitai.locks import held_lock

    assert monitor_pass().again is False
    with held_lock(LOCK_NAME):
        assert monitor_pass().skipped is True  # this tick is skipped ...

    class Slow:
        """The client of a pass during which one more tick arrives (and is skipped)."""

        def list_instances(self) -> list[Any]:
            assert monitor_pass().skipped is True
            return []

    # ... but a skipped tick before a pass started is no reason to go again,
    assert monitor_pass().again is False
    # while one skipped during the pass is.
    assert monitor_pass(client=Slow()).again is True  # type: ignore[arg-type]
    assert monitor_pass().again is False


def test_a_proxy_error_page_with_200_is_not_ready(make: Any, catalog: SandboxControl) -> None:

    instance = make()
    catalog.set_timing(app_boot=60)
    catalog.set_faults(proxy_error_name=instance.novita_name)
    checking = monitor_until(provision(instance), InstanceStatus.HEALTH_CHECKING)
    assert checking.endpoints[0]["healthy"] is False
    assert monitor_and_reload(checking).status == InstanceStatus.HEALTH_CHECKING

    answer = urllib3.request("GET", checking.endpoints[0]["url"], retries=False)
    assert answer.status == 200  # the sandbox's edge says 200 …
    assert b"Bad Gateway" in answer.data  # … with an nginx error page


def test_a_pass_over_steady_instances_costs_the_same_queries_for_5_or_10(
    api_client: APIClient, catalog: SandboxControl
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from instances.monitoring import monitor_pass

    def make_ready(names: range) -> None:
        for n in names:
            assert create(api_client, create_body(name=f"s{n}")).status_code == 202
            provision(Instance.objects.get(name=f"s{n}"))

        def all_ready() -> bool:
            monitor_pass()
            return not Instance.objects.exclude(status=InstanceStatus.READY).exists()

        wait_for(all_ready, what="all ready")

    def queries_of_a_pass() -> int:
        monitor_pass()  # settle anything left from the last transitions
        with CaptureQueriesContext(connection) as captured:
            monitor_pass()
        return len(captured.captured_queries)

    make_ready(range(5))
    five = queries_of_a_pass()
    make_ready(range(5, 10))
    assert queries_of_a_pass() == five


def test_invalid_state_change_rereads_and_waits(
    make: Any, api_client: APIClient, catalog: SandboxControl
) -> None:
    from instances.actions import instance_action_run

    instance = monitor_until(provision(make()), InstanceStatus.READY)
    get_client().stop_instance(instance.novita_instance_id)  # stopped behind our back …
    catalog.wait_for(instance.novita_instance_id, "exited")
    response = api_client.post(f"/api/v1/instances/{instance.pk}/stop/")  # … before we ask
    assert response.status_code == 202
    instance_action_run(job_id=response.json()["job"]["id"])  # "invalid state change"
    assert reload(instance).status == InstanceStatus.STOPPING
    assert "stop_under_way" in reasons(instance)
    stopped = monitor_until(instance, InstanceStatus.STOPPED)
    assert stopped.current_job is not None
    assert stopped.current_job.status == JobStatus.SUCCEEDED


def test_stop_deadline_fails_and_deletes(
    make: Any, api_client: APIClient, catalog: SandboxControl
) -> None:
    from instances.actions import instance_action_run

    instance = monitor_until(provision(make()), InstanceStatus.READY)
    catalog.set_timing(stopping=60)
    response = api_client.post(f"/api/v1/instances/{instance.pk}/stop/")
    instance_action_run(job_id=response.json()["job"]["id"])
    Instance.objects.filter(pk=instance.pk).update(phase_deadline_at=timezone.now())
    failed = monitor_until(instance, InstanceStatus.FAILED)
    assert failed.failure_reason == FailureReason.STOP_TIMEOUT
    wait_for(lambda: monitor_and_reload(failed).released_at, what="released")
    assert upstream_live(catalog) == []


def test_two_found_under_the_name_keeps_the_oldest_and_deletes_the_other(
    make: Any, catalog: SandboxControl
) -> None:
    instance = make()
    first = upstream_create(instance.novita_name)
    second = upstream_create(instance.novita_name)
    Instance.objects.filter(pk=instance.pk).update(
        status=InstanceStatus.PROVISIONING, create_sent_at=timezone.now()
    )
    adopted = provision(instance)
    assert adopted.status == InstanceStatus.STARTING
    # The oldest is kept (both were created within the same second here: either may be).
    kept = adopted.novita_instance_id
    assert kept in (first, second)
    other = second if kept == first else first
    statuses = {i["id"]: i["status"] for i in catalog.instances()}
    assert statuses[other] in ("toRemove", "removing", "removed")
    assert statuses[kept] not in ("toRemove", "removing", "removed")
    assert "duplicate_deleted" in reasons(adopted)


def test_a_duplicate_beside_a_ready_instance_is_deleted(make: Any, catalog: SandboxControl) -> None:
    from instances.monitoring import monitor_pass

    instance = monitor_until(provision(make()), InstanceStatus.READY)
    extra = upstream_create(instance.novita_name)
    assert monitor_pass().deletes == 1
    statuses = {i["id"]: i["status"] for i in catalog.instances()}
    assert statuses[extra] in ("toRemove", "removing", "removed")
    assert reload(instance).status == InstanceStatus.READY


def test_listings_without_endpoint_urls_cost_one_get_per_instance_not_per_pass(
    make: Any, catalog: SandboxControl
) -> None:
    """Novita's list items may carry ports without their URLs (novita-api.md §2.5): the URL is
    read once from the instance itself and kept, not fetched again every pass."""
    catalog.set_faults(list_omits_endpoints=True, unhealthy_name="*")
    instances = [provision(make(name=f"quiet-{n}")) for n in range(3)]
    checking = [monitor_until(i, InstanceStatus.HEALTH_CHECKING) for i in instances]
    for instance in checking:
        assert instance.endpoints[0]["url"].endswith(f"/_app/{instance.novita_instance_id}/8188/")

    def gets_of_a_pass() -> int:
        before = catalog.stats()["calls"].get("GET /gpu/instance", {})
        monitor_and_reload(checking[0])
        after = catalog.stats()["calls"].get("GET /gpu/instance", {})
        return sum(after.values()) - sum(before.values())

    assert [gets_of_a_pass() for _ in range(3)] == [0, 0, 0]
    catalog.set_faults(unhealthy_name="")
    for instance in checking:
        ready = monitor_until(instance, InstanceStatus.READY)
        assert ready.endpoints[0]["healthy"] is True
        assert ready.endpoints[0]["url"] == instance.endpoints[0]["url"]
