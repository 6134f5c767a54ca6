"""The monitoring pass writes in batches: its queries grow with batches, not with instances; a
row that moved between the listing and the write is skipped with nothing written for it; a batch
writes what `instance_transition` writes. Against the sandbox over HTTP, as the other monitor
tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from instances import lifecycle
from instances.lifecycle import (
    Transition,
    instance_transition_apply,
    instance_transitions_apply,
)
from instances.models import FailureReason, Instance, InstanceEvent, InstanceStatus
from instances.monitoring import MonitorPass, PassReport, monitor_pass, writes
from instances.selectors import instance_representation
from instances.services import novita_name_for
from jobs.models import Job, JobStatus
from novita_sandbox.control import SandboxControl
from novitai.novita.client import get_client
from novitai.novita.types import CreateInstanceRequest, PortSpec
from tenants.models import Tenant
from tests.instances.conftest import PRODUCT
from tests.instances.helpers import reasons, reload, timeless
from webhooks import services as webhooks
from webhooks.models import WebhookDelivery

S = InstanceStatus
WEBHOOK = "https://hooks.example.com/novitai"
PRODUCT_ID = "4090.16c62g.sim"
# Two sizes, each written in two batches: the same number of queries at both.
SIZES = (10, 40)


def seed(
    tenant: Tenant,
    n: int,
    *,
    status: str = S.STARTING,
    webhook_url: str = "",
    upstream: bool = True,
) -> list[Instance]:
    """n rows in `status`, each with a waiting provision job and — with `upstream` — its instance
    in the sandbox (comfyui's http 8188)."""
    client = get_client()
    now = timezone.now()
    ids = [uuid.uuid4() for _ in range(n)]
    novita_ids = [
        client.create_instance(
            CreateInstanceRequest(
                name=novita_name_for(instance_id),
                product_id=PRODUCT_ID,
                gpu_num=1,
                rootfs_size=60,
                image_url="ghcr.io/example/comfyui:latest",
                cluster_id="us-tx-2",
                ports=(PortSpec(port=8188, type="http"),),
            )
        )
        if upstream
        else f"absent{instance_id.hex[:10]}"
        for instance_id in ids
    ]
    jobs = Job.objects.bulk_create(
        Job(
            kind="provision",
            task_name="instances.provision",
            subject_type="instance",
            subject_id=instance_id,
            tenant=tenant,
            status=JobStatus.WAITING,
            attempts=1,
        )
        for instance_id in ids
    )
    Instance.objects.bulk_create(
        Instance(
            id=instance_id,
            tenant=tenant,
            name=f"b-{instance_id.hex[:12]}",
            status=status,
            template_id="212",
            product_names=[PRODUCT],
            rootfs_size=60,
            webhook_url=webhook_url,
            novita_name=novita_name_for(instance_id),
            novita_instance_id=novita_id,
            novita_product_id=PRODUCT_ID,
            product_name=PRODUCT,
            region="US-TX-02",
            cluster_id="us-tx-2",
            provisioned_at=now,
            phase_deadline_at=now + timedelta(hours=1),
            current_job=job,
        )
        for instance_id, novita_id, job in zip(ids, novita_ids, jobs, strict=True)
    )
    return [reload(Instance(pk=instance_id)) for instance_id in ids]


def upstream_is(
    sandbox: SandboxControl, rows: list[Instance], status: str, *, app_ready: bool = False
) -> None:
    for row in rows:
        sandbox.wait_for(row.novita_instance_id, status, app_ready=app_ready)


def fresh(sandbox: SandboxControl) -> None:
    """Nothing of a previous size: no rows, no upstream instances (the listing would have them)."""
    Instance.objects.all().delete()
    sandbox.reset()


def queries_of_a_pass() -> tuple[int, PassReport]:
    with CaptureQueriesContext(connection) as captured:
        report = monitor_pass()
    assert not report.skipped
    return len(captured.captured_queries), report


def health_checking(sandbox: SandboxControl, tenant: Tenant, n: int) -> list[Instance]:
    """n rows (with a webhook URL) that a pass moved to health_checking, whose apps answer now."""
    sandbox.set_faults(unhealthy_name="*")
    rows = seed(tenant, n, webhook_url=WEBHOOK)
    upstream_is(sandbox, rows, "running")
    assert monitor_pass().counts == {S.HEALTH_CHECKING: n}
    sandbox.set_faults(unhealthy_name="")
    upstream_is(sandbox, rows, "running", app_ready=True)
    return [reload(row) for row in rows]


def job_of(instance: Instance) -> Job:
    """The instance's job as stored."""
    assert instance.current_job_id is not None
    return Job.objects.get(pk=instance.current_job_id)


# --- queries per pass --------------------------------------------------------------------------


@pytest.mark.django_db
def test_new_upstream_statuses_cost_the_same_queries_for_10_or_40(
    novita: SandboxControl, tenant: Tenant, settings: Any
) -> None:
    counts = []
    for n in SIZES:
        fresh(novita)
        novita.set_timing(pulling=60)
        settings.MONITOR_WRITE_BATCH_SIZE = n // 2
        rows = seed(tenant, n)
        upstream_is(novita, rows, "pulling")
        queries, report = queries_of_a_pass()
        assert (report.rows, report.transitions) == (n, 0)
        noted = Instance.objects.values_list("status", "upstream_status", "upstream_seen_at")
        assert {(status, upstream) for status, upstream, _ in noted} == {(S.STARTING, "pulling")}
        assert all(seen is not None for _, _, seen in noted)
        counts.append(queries)
    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_running_to_health_checking_costs_the_same_queries_for_10_or_40(
    novita: SandboxControl, tenant: Tenant, settings: Any
) -> None:
    counts = []
    for n in SIZES:
        fresh(novita)
        novita.set_faults(unhealthy_name="*")  # stays health_checking: its flags are written
        settings.MONITOR_WRITE_BATCH_SIZE = n // 2
        rows = seed(tenant, n)
        upstream_is(novita, rows, "running")
        queries, report = queries_of_a_pass()
        assert (report.transitions, report.counts, report.health_checked) == (
            n,
            {S.HEALTH_CHECKING: n},
            n,
        )
        for row in rows:
            checking = reload(row)
            assert checking.status == S.HEALTH_CHECKING
            assert checking.upstream_status == "running"
            assert [(e["port"], e["healthy"]) for e in checking.endpoints] == [(8188, False)]
            assert checking.endpoints[0]["url"].endswith(f"/_app/{row.novita_instance_id}/8188/")
            assert reasons(checking) == ["running"]
            assert checking.current_job is not None
            assert checking.current_job.status == JobStatus.WAITING
        counts.append(queries)
    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_health_checking_to_ready_costs_the_same_queries_for_10_or_40(
    novita: SandboxControl,
    tenant: Tenant,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    woken: list[uuid.UUID] = []
    monkeypatch.setattr(webhooks, "_enqueue_delivery", woken.append)
    counts = []
    for n in SIZES:
        fresh(novita)
        settings.MONITOR_WRITE_BATCH_SIZE = n // 2
        rows = health_checking(novita, tenant, n)
        woken.clear()
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            queries, report = queries_of_a_pass()
        assert report.counts == {S.READY: n}
        # One wake-up per batch sends every delivery of it; one counts the job outcomes.
        assert len(callbacks) == 2 * 2
        deliveries = WebhookDelivery.objects.filter(instance_id__in=[r.pk for r in rows])
        assert sorted(woken) == sorted(d.pk for d in deliveries)
        assert len(woken) == n
        for row in rows:
            ready = reload(row)
            assert ready.status == S.READY
            assert ready.ready_at is not None
            assert [(e["port"], e["healthy"]) for e in ready.endpoints] == [(8188, True)]
            assert reasons(ready) == ["running", "healthy"]
            assert ready.current_job is not None
            assert ready.current_job.status == JobStatus.SUCCEEDED
            delivery = deliveries.get(instance_id=row.pk)
            assert delivery.event_type == "instance.ready"
            assert timeless(delivery.payload["data"]) == timeless(instance_representation(ready))
        counts.append(queries)
    assert counts[0] == counts[1]


# --- rows that moved meanwhile -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_row_moved_between_the_listing_and_the_write_is_skipped_the_others_move(
    novita: SandboxControl, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = health_checking(novita, tenant, 5)
    racer = rows[2]
    batches: list[int] = []

    def racing(*, transitions: list[Transition]) -> list[Transition]:
        batches.append(len(transitions))
        # A tenant's delete commits after the listing, before this batch is written.
        assert instance_transition_apply(
            transition=Transition(
                instance=reload(racer),
                to_status=S.TERMINATING,
                reason="delete_requested",
                message="The tenant asked for a delete.",
            )
        )
        return instance_transitions_apply(transitions=transitions)

    monkeypatch.setattr(writes, "instance_transitions_apply", racing)
    report = monitor_pass()

    assert batches == [5]  # the racer was in the batch …
    assert report.counts == {S.READY: 4}  # … and only the others moved
    raced = reload(racer)
    assert raced.status == S.TERMINATING
    assert reasons(raced) == ["running", "delete_requested"]
    assert not WebhookDelivery.objects.filter(instance_id=racer.pk).exists()
    job = job_of(racer)
    assert (job.status, job.finished_at, job.last_error) == (JobStatus.WAITING, None, "")
    for row in rows:
        if row.pk == racer.pk:
            continue
        ready = reload(row)
        assert ready.status == S.READY
        assert reasons(ready) == ["running", "healthy"]
        assert ready.current_job is not None
        assert ready.current_job.status == JobStatus.SUCCEEDED
        assert WebhookDelivery.objects.get(instance_id=row.pk).event_type == "instance.ready"


@pytest.mark.django_db
def test_two_passes_despite_the_lock_write_each_transition_once(
    novita: SandboxControl, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second pass runs whole while the first is about to write: the first finds every row
    moved and writes nothing — no second event, webhook or job change."""
    rows = health_checking(novita, tenant, 4)
    inner: list[PassReport] = []

    def racing(*, transitions: list[Transition]) -> list[Transition]:
        if not inner:
            inner.append(PassReport())  # the inner pass comes back here: let it through
            inner[0] = MonitorPass(get_client()).run()
        return instance_transitions_apply(transitions=transitions)

    monkeypatch.setattr(writes, "instance_transitions_apply", racing)
    outer = monitor_pass()

    assert inner[0].counts == {S.READY: 4}
    assert outer.transitions == 0
    for row in rows:
        assert reasons(row) == ["running", "healthy"]
        assert WebhookDelivery.objects.filter(instance_id=row.pk).count() == 1
        job = job_of(row)
        assert job.status == JobStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_transition_racing_a_batch_waits_for_it_then_finds_the_new_status(
    tenant: Tenant, novita: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections: while a batch holds its rows (Postgres row locks; SQLite's IMMEDIATE
    write lock), an API transition of one of them waits, then finds it moved and writes nothing."""
    rows = seed(tenant, 3, status=S.HEALTH_CHECKING, webhook_url=WEBHOOK, upstream=False)
    locked, release = threading.Event(), threading.Event()
    real_jobs_finish = lifecycle.jobs_finish

    def held_jobs_finish(**kw: Any) -> Any:
        locked.set()
        assert release.wait(10)
        return real_jobs_finish(**kw)

    monkeypatch.setattr(lifecycle, "jobs_finish", held_jobs_finish)
    results: dict[str, Any] = {}

    def in_thread(name: str, work: Callable[[], Any]) -> threading.Thread:
        def run() -> None:
            try:
                results[name] = work()
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    batch = in_thread(
        "batch",
        lambda: instance_transitions_apply(
            transitions=[
                Transition(
                    instance=row,
                    to_status=S.READY,
                    reason="healthy",
                    fields={"ready_at": timezone.now()},
                    job_outcome=JobStatus.SUCCEEDED,
                )
                for row in rows
            ]
        ),
    )
    assert locked.wait(10)
    api = in_thread(
        "api",
        lambda: instance_transition_apply(
            transition=Transition(
                instance=reload(rows[0]), to_status=S.TERMINATING, reason="delete_requested"
            )
        ),
    )
    api.join(timeout=0.5)
    assert api.is_alive()  # waiting for the batch
    release.set()
    batch.join(10)
    api.join(10)

    assert len(results["batch"]) == 3
    assert results["api"] is False
    assert reload(rows[0]).status == S.READY
    assert reasons(rows[0]) == ["healthy"]
    assert WebhookDelivery.objects.filter(instance_id=rows[0].pk).count() == 1


# --- the batch writes what the single path writes ---------------------------------------------

AT = timezone.now().replace(microsecond=0)
ENDPOINTS = [
    {"port": 8188, "type": "http", "url": "http://127.0.0.1:1/_app/x/8188/", "healthy": None}
]
HEALTHY = [{**ENDPOINTS[0], "healthy": True}]

# (from status, the transition of a row read in it)
KINDS: dict[str, tuple[str, Callable[[Instance], Transition]]] = {
    "running": (
        S.STARTING,
        lambda row: Transition(
            instance=row,
            to_status=S.HEALTH_CHECKING,
            reason="running",
            message="Novita reports it running; checking the application.",
            fields={"endpoints": ENDPOINTS},
        ),
    ),
    "healthy": (
        S.HEALTH_CHECKING,
        lambda row: Transition(
            instance=row,
            to_status=S.READY,
            reason="healthy",
            message="The application answers its health checks.",
            fields={"endpoints": HEALTHY, "ready_at": AT},
            data={"checks": {"8188": "200"}},
            job_outcome=JobStatus.SUCCEEDED,
        ),
    ),
    "failed": (
        S.HEALTH_CHECKING,
        lambda row: Transition.to_failed(
            instance=row,
            reason=FailureReason.HEALTH_CHECK_TIMEOUT,
            message="The application did not pass its health checks within 600s.",
        ),
    ),
    "cancelled": (
        S.STOPPING,
        lambda row: Transition(
            instance=row,
            to_status=S.STOPPED,
            reason="stopped",
            message="Novita reports it stopped.",
            fields={"stopped_at": AT},
            job_outcome=JobStatus.CANCELLED,
        ),
    ),
}


def written(instance: Instance) -> dict[str, Any]:
    """What a transition wrote for the instance, without what names it (ids, names, times
    compared to its own update time instead)."""
    row = reload(instance)
    job = job_of(row)
    stamp = row.updated_at.isoformat().replace("+00:00", "Z")
    identity = {"id", "name", "novita_instance_id", "created_at", "provisioned_at"}
    deliveries = [
        {
            "event_type": d.event_type,
            "target_url": d.target_url,
            "status": d.status,
            "attempts": d.attempts,
            "event_id": (d.event_id[:4], len(d.event_id)),
            "due_at_event": d.next_attempt_at == row.updated_at,
            "woken": d.dispatched_at is not None,
            "type": d.payload["type"],
            "stamped_at_event": d.payload["timestamp"] == stamp,
            "data_is_the_representation": timeless(d.payload["data"])
            == timeless(instance_representation(row)),
            "data": {k: v for k, v in d.payload["data"].items() if k not in identity}
            | {"job": {k: v for k, v in d.payload["data"]["job"].items() if k == "status"}},
        }
        for d in WebhookDelivery.objects.filter(instance_id=row.pk)
    ]
    return {
        "status": row.status,
        "failure": (row.failure_reason, row.failure_message, row.released_at),
        "endpoints": row.endpoints,
        "times": (row.ready_at, row.stopped_at),
        "deadline": row.phase_deadline_at - row.updated_at if row.phase_deadline_at else None,
        "events": [
            (
                e.from_status,
                e.to_status,
                e.reason,
                e.message,
                e.actor,
                e.data,
                e.at == row.updated_at,
            )
            for e in InstanceEvent.objects.filter(instance=row).order_by("at", "id")
        ],
        "deliveries": deliveries,
        "job": (
            job.status,
            job.last_error,
            job.finished_at is not None,
            job.lease_token,
            job.lease_expires_at,
            job.dispatched_at,
        ),
    }


@pytest.mark.django_db
def test_a_batch_writes_what_instance_transition_writes(
    tenant: Tenant, novita: SandboxControl
) -> None:
    single: dict[str, Instance] = {}
    batched: dict[str, Instance] = {}
    for kind, (from_status, _) in KINDS.items():
        single[kind], batched[kind] = seed(
            tenant, 2, status=from_status, webhook_url=WEBHOOK, upstream=False
        )
    for kind, (_, make) in KINDS.items():
        assert instance_transition_apply(transition=make(single[kind]))
    # Every kind in one batch: one transaction, a bulk UPDATE per kind.
    done = instance_transitions_apply(
        transitions=[make(batched[kind]) for kind, (_, make) in KINDS.items()]
    )
    assert [t.instance.pk for t in done] == [batched[kind].pk for kind in KINDS]

    for kind in KINDS:
        assert written(batched[kind]) == written(single[kind]), kind
        # Both leave the instance (and its job) in memory as written.
        for instance in (single[kind], batched[kind]):
            row = reload(instance)
            assert (instance.status, instance.endpoints) == (row.status, row.endpoints)
            assert instance.current_job is not None
            assert row.current_job is not None
            assert instance.current_job.status == row.current_job.status
    assert written(batched["healthy"])["job"][:2] == (JobStatus.SUCCEEDED, "")
    assert written(batched["failed"])["job"][:2] == (
        JobStatus.FAILED,
        "The application did not pass its health checks within 600s.",
    )
    assert written(batched["cancelled"])["job"][:2] == (
        JobStatus.CANCELLED,
        "Novita reports it stopped.",
    )
    assert [d["event_type"] for k in KINDS for d in written(batched[k])["deliveries"]] == [
        "instance.ready",
        "instance.failed",
        "instance.stopped",
    ]


@pytest.mark.django_db
def test_a_batch_skips_a_transition_read_in_another_status(
    tenant: Tenant, novita: SandboxControl
) -> None:
    stale, current = seed(tenant, 2, status=S.HEALTH_CHECKING, webhook_url=WEBHOOK, upstream=False)
    Instance.objects.filter(pk=stale.pk).update(status=S.TERMINATING)
    _, make = KINDS["healthy"]

    done = instance_transitions_apply(transitions=[make(stale), make(current)])

    assert [t.instance.pk for t in done] == [current.pk]
    assert stale.status == S.HEALTH_CHECKING  # in memory as read: nothing happened to it
    assert reload(stale).status == S.TERMINATING
    assert reasons(stale) == []
    assert not WebhookDelivery.objects.filter(instance_id=stale.pk).exists()
    assert job_of(stale).status == JobStatus.WAITING
    assert reload(current).status == S.READY


@pytest.mark.django_db
def test_a_batch_takes_one_transition_per_instance(tenant: Tenant, novita: SandboxControl) -> None:
    (row,) = seed(tenant, 1, status=S.HEALTH_CHECKING, upstream=False)
    _, make = KINDS["healthy"]
    with pytest.raises(ValueError, match="one transition per instance"):
        instance_transitions_apply(transitions=[make(row), make(row)])
    assert reload(row).status == S.HEALTH_CHECKING


# --- the bulk writers ----------------------------------------------------------------------


@pytest.mark.django_db
def test_rows_update_writes_each_row_its_values_where_the_filter_holds(
    tenant: Tenant, novita: SandboxControl
) -> None:
    from instances.bulk import rows_update

    a, b, c = seed(tenant, 3, status=S.HEALTH_CHECKING, upstream=False)
    Instance.objects.filter(pk=c.pk).update(status=S.TERMINATING)
    values = {
        row.pk: {"endpoints": [{"port": n, "healthy": n == 1}], "ready_at": None if n else AT}
        for n, row in enumerate((a, b, c))
    }

    written = rows_update(Instance.objects.filter(status=S.HEALTH_CHECKING), values)

    assert written == 2
    assert (reload(a).endpoints, reload(a).ready_at) == ([{"port": 0, "healthy": False}], AT)
    assert (reload(b).endpoints, reload(b).ready_at) == ([{"port": 1, "healthy": True}], None)
    assert reload(c).endpoints == []  # not health_checking: untouched
    assert rows_update(Instance.objects.filter(pk__in=[]), values) == 0


@pytest.mark.django_db
def test_an_older_listing_does_not_overwrite_a_newer_upstream_status(
    tenant: Tenant, novita: SandboxControl
) -> None:
    """Two passes despite the lock: the slower one, whose listing is older, writes nothing over
    what the newer one saw."""
    (row,) = seed(tenant, 1, upstream=False)
    seen = timezone.now()
    Instance.objects.filter(pk=row.pk).update(upstream_status="running", upstream_seen_at=seen)
    row.upstream_status = "pulling"

    writes.upstream_statuses_write([row], seen_at=seen - timedelta(seconds=1))

    assert (reload(row).upstream_status, reload(row).upstream_seen_at) == ("running", seen)
