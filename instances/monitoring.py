"""The monitoring pass: one listing of Novita's instances advances every instance we watch.

    instances.monitor (beat, every MONITOR_INTERVAL_SECONDS; one pass at a time by a lock that
    dies with its holder, novitai/locks.py — a killed pass delays the next by no more than the
    next tick — and safe if two run anyway: every change is a conditional UPDATE)

1. List Novita's instances, every page (upstream calls grow with pages, not with instances).
2. Read every watched row at once (one query): in transit, ready/stopped (drift), terminating,
   failed with something left upstream.
3. Decide per row against the listing; health-check the rows whose instance runs, concurrently;
   write only what changed (a transition, new endpoint flags, the upstream status).
4. Delete what must go: failed instances' GPUs, deletes not yet carried out, duplicates, and
   orphans (our name prefix, no live row) after ORPHAN_GRACE_SECONDS.

Writes are collected while deciding and made in batches of MONITOR_WRITE_BATCH_SIZE rows, so
that a pass's queries grow with batches, not with instances: the upstream statuses, endpoint
flags and delete bookkeeping by bulk statements; the transitions through
`instance_transitions_apply`, one transaction per batch (rows locked, those moved meanwhile
skipped with nothing written, as `instance_transition` skips them). A transition that leads to
more in the same pass (running → health_checking, then its health checks) continues once its
batch has committed.

A row changed after the listing was taken is left for the next pass (the listing may predate
that change), and so is a start/stop/restart whose call has not been confirmed sent before it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog.services import offer_capacity_failed
from instances.bulk import rows_update
from instances.health import CheckPlan, CheckResult, CheckTarget, run_checks
from instances.lifecycle import (
    SYSTEM,
    Transition,
    instance_event_build,
    instance_transition_apply,
    instance_transitions_apply,
)
from instances.metrics import DUPLICATES_DELETED, ORPHANS_DELETED, SPOT_RECOVERIES
from instances.models import FailureReason, Instance, InstanceEvent, InstanceStatus, OnPreempt
from instances.provisioning import grace_over
from instances.services import (
    SPOT_RECOVERY,
    Action,
    instance_action_request,
    instance_reprovision,
)
from jobs.models import JobStatus
from novitai.errors import Conflict
from novitai.locks import held_lock
from novitai.novita import errors as novita
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.types import NovitaInstance, NovitaInstanceStatus
from novitai.outages import cache_guard

logger = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_NAME = "instances.monitor"
AGAIN_KEY = "instances:monitor:again"
PASSES_KEY = "instances:monitor:passes"
LAST_PASS_KEY = "instances:monitor:last_pass_at"  # noqa: S105 - a cache key
ORPHAN_KEY = "instances:orphan:{}"

S = InstanceStatus
WATCHED = Q(
    status__in=[
        S.PROVISIONING,
        S.STARTING,
        S.HEALTH_CHECKING,
        S.READY,
        S.STOPPING,
        S.STOPPED,
        S.RESTARTING,
        S.TERMINATING,
        S.PREEMPTED,
    ]
) | Q(status=S.FAILED, released_at__isnull=True)

SPOT_RECLAIMED = {"reclaiming", "terminated"}


def reclaimed(row: Instance, item: NovitaInstance) -> bool:
    return row.billing_mode == "spot" and item.spot_status in SPOT_RECLAIMED


def recoverable(row: Instance) -> bool:
    """Created with on_preempt restart or reprovision, and recoveries left."""
    return (
        row.on_preempt != OnPreempt.NOTIFY and row.recoveries < settings.SPOT_RECOVERY_MAX_ATTEMPTS
    )


GONE = {NovitaInstanceStatus.REMOVED}
HALTED = {NovitaInstanceStatus.EXITED, NovitaInstanceStatus.TO_STOP, NovitaInstanceStatus.STOPPING}


@dataclass
class Pending:
    """A transition decided in the pass, written with its batch; `then` runs once it happened."""

    transition: Transition
    then: Callable[[], None] | None = None
    counted: bool = True


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class PassReport:
    upstream: int = 0
    rows: int = 0
    transitions: int = 0
    health_checked: int = 0
    deletes: int = 0
    orphans_deleted: int = 0
    skipped: bool = False
    again: bool = False  # a tick was skipped while this pass ran: run the next one now
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def monitor_pass(*, client: NovitaClient | None = None) -> PassReport:
    """One pass, unless another holds the lock (then an empty, skipped report, and the pass
    that holds it is asked to go again: see `again`)."""
    with held_lock(LOCK_NAME) as held:
        if not held:
            _noted("monitor_again", lambda: cache.set(AGAIN_KEY, True, timeout=_again_ttl()))
            return PassReport(skipped=True)
        _noted("monitor_again", lambda: cache.delete(AGAIN_KEY))
        report = Monitor(client or get_client()).run()
    # A tick that came while this pass ran was skipped: rather than wait for the next tick
    # (up to one interval more of notification lag), the caller runs the next pass now.
    again = cache_guard("monitor_again", lambda: cache.get(AGAIN_KEY), None, cache=cache)
    report.again = bool(again)
    return report


def _again_ttl() -> float:
    return max(2 * settings.MONITOR_INTERVAL_SECONDS, 1)


def _noted(operation: str, call: Callable[[], object]) -> None:
    """Bookkeeping in the cache that a pass can do without (Redis down): not made."""
    cache_guard(operation, call, None, cache=cache)


def monitor_passes_count() -> int:
    return int(cache_guard("monitor_passes", lambda: cache.get(PASSES_KEY), None, cache=cache) or 0)


def monitor_last_pass_at() -> float | None:
    """Unix time the last pass ended; None when none was seen (raises if the cache does)."""
    at = cache.get(LAST_PASS_KEY)
    return float(at) if at is not None else None


def _count_pass() -> None:
    def count() -> None:
        if not cache.add(PASSES_KEY, 1, timeout=None):
            try:
                cache.incr(PASSES_KEY)
            except ValueError:
                cache.set(PASSES_KEY, 1, timeout=None)
        cache.set(LAST_PASS_KEY, time.time(), timeout=None)

    _noted("monitor_passes", count)


def endpoints_of(upstream: NovitaInstance, previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Endpoints from Novita's port mappings, keeping the health flags of unchanged ones.

    Novita's listings may carry ports without their endpoint URL: a port's URL already known
    from an earlier read of the instance is kept, so that it is fetched once, not every pass.
    """
    before = {(e.get("port"), e.get("url")): e.get("healthy") for e in previous}
    known = {(e.get("port"), e.get("type")): e.get("url") for e in previous if e.get("url")}
    endpoints = []
    for p in upstream.port_mappings:
        url = p.endpoint or known.get((p.port, p.type)) or ""
        endpoints.append(
            {"port": p.port, "type": p.type, "url": url, "healthy": before.get((p.port, url))}
        )
    return endpoints


def check_plan(instance: Instance) -> CheckPlan:
    """What to check: health_check.ports, or every http port (the template's) by default."""
    config = instance.health_check or {}
    ports = config.get("ports")
    targets = tuple(
        CheckTarget(port=e["port"], type=e["type"], url=e.get("url") or "")
        for e in instance.endpoints
        if (e["port"] in ports if ports is not None else e["type"] == "http")
    )
    expected = tuple(tuple(r) for r in (config.get("expected_status") or [[200, 399]]))
    return CheckPlan(
        key=instance.pk,
        targets=targets,
        path=config.get("path") or "/",
        expected=expected,
        timeout=float(
            config.get("timeout_seconds") or settings.HEALTH_CHECK_REQUEST_TIMEOUT_SECONDS
        ),
    )


def failure_of(upstream: NovitaInstance) -> tuple[FailureReason, str] | None:
    """An upstream failure Novita reports (statusError), classified."""
    error = upstream.status_error
    if not (error.state or error.message):
        return None
    text = f"{error.state} {error.message}".casefold()
    if "pull" in text or "image" in text:
        return FailureReason.IMAGE_PULL_FAILED, f"Novita could not pull the image: {error.message}"
    return FailureReason.UPSTREAM_ERROR, f"Novita reports an error: {error.message or error.state}"


class Monitor:
    def __init__(self, client: NovitaClient) -> None:
        self.client = client
        self.report = PassReport()
        self.plans: list[tuple[Instance, CheckPlan]] = []
        self.deletes: list[tuple[Instance | None, str, str]] = []  # (row, novita id, why)
        self.by_id: dict[str, NovitaInstance] = {}
        self.by_name: dict[str, list[NovitaInstance]] = defaultdict(list)
        self.stored_endpoints: dict[Any, list[dict[str, Any]]] = {}
        self.snapshot_at = timezone.now()
        self.now = self.snapshot_at
        # Writes collected during the pass, made in batches of this many rows.
        self.batch_size = int(settings.MONITOR_WRITE_BATCH_SIZE)
        self.pending: list[Pending] = []
        self.noted: list[Instance] = []  # rows whose upstream status changed (in memory)
        self.flags: list[tuple[Any, list[dict[str, Any]]]] = []  # (id, endpoints), new flags
        self.released: list[Instance] = []  # failed rows with nothing left upstream
        self.events: list[InstanceEvent] = []  # steps inside a status (duplicates deleted)
        self.delete_requested: list[Any] = []  # ids of rows whose delete was just asked
        self.reclaimed_offers: set[tuple[str, str]] = set()  # (product, cluster) marked

    # --- the pass -----------------------------------------------------------------------------

    def run(self) -> PassReport:
        self.snapshot_at = timezone.now()
        try:
            upstream = self.client.list_instances()
        except novita.NovitaError as exc:
            # A partial or failed listing must never be read as "those instances are gone".
            logger.warning("monitor pass skipped: listing Novita's instances failed: %s", exc)
            self.report.skipped = True
            return self.report
        self.now = timezone.now()
        for item in upstream:
            self.by_id[item.id] = item
            self.by_name[item.name].append(item)
        self.report.upstream = len(upstream)
        # Not the secrets (envs, the tenant's webhook secrets): nothing here needs them, and
        # each row's would be decrypted.
        rows = list(
            Instance.objects.filter(WATCHED)
            .select_related("tenant", "current_job")
            .defer("envs", "tenant__webhook_secret", "tenant__previous_webhook_secret")
        )
        self.report.rows = len(rows)
        self.stored_endpoints = {row.pk: row.endpoints for row in rows}
        for row in rows:
            if row.updated_at >= self.snapshot_at:
                continue  # changed after the listing: judged next pass
            self.guarded(row, functools.partial(self.advance, row))
        self.write_upstream_statuses()
        self.apply_transitions()  # their follow-ups plan health checks
        self.write_releases()
        self.health_check()
        self.write_endpoint_flags()
        self.apply_transitions()
        self.orphans(rows)
        self.carry_out_deletes()
        _count_pass()
        logger.debug("monitor pass: %s", self.report)
        return self.report

    def advance(self, row: Instance) -> None:
        handler = {
            S.PROVISIONING: self.provisioning,
            S.STARTING: self.booting,
            S.RESTARTING: self.booting,
            S.HEALTH_CHECKING: self.health_checking,
            S.READY: self.ready,
            S.STOPPING: self.stopping,
            S.STOPPED: self.stopped,
            S.PREEMPTED: self.preempted,
            S.TERMINATING: self.teardown,
            S.FAILED: self.teardown,
        }[row.status]  # type: ignore[index]
        handler(row)

    @staticmethod
    def guarded(row: Instance, step: Callable[[], None]) -> None:
        """One instance's trouble must not stop the pass for every other one: the row is looked
        at again next pass."""
        try:
            step()
        except novita.NovitaError as exc:
            logger.warning("monitor: instance %s not advanced: %s", row.pk, exc)
        except Exception:
            logger.exception("monitor: instance %s not advanced", row.pk)

    def in_batches(
        self, what: str, items: Sequence[T], write: Callable[[Sequence[T]], object]
    ) -> None:
        """`write` each batch of `items`; a batch that fails is logged and left for the next
        pass (every write here is decided afresh from the next listing)."""
        for batch in chunks(items, self.batch_size):
            try:
                write(batch)
            except Exception:
                logger.exception(
                    "monitor: %d %s not written; judged again next pass", len(batch), what
                )

    # --- helpers ------------------------------------------------------------------------------

    def move(
        self,
        row: Instance,
        to_status: str,
        reason: str,
        message: str,
        *,
        then: Callable[[], None] | None = None,
        counted: bool = True,
        **kw: Any,
    ) -> None:
        """A transition from the status the row was read with, written with its batch; `then`
        runs after it happened (not when the row moved meanwhile)."""
        transition = Transition(
            instance=row, to_status=to_status, reason=reason, message=message, **kw
        )
        self.pending.append(Pending(transition, then=then, counted=counted))

    def fail(self, row: Instance, reason: FailureReason, message: str) -> None:
        self.pending.append(
            Pending(Transition.to_failed(instance=row, reason=reason, message=message))
        )

    def count(self, to_status: str) -> None:
        self.report.transitions += 1
        self.report.counts[to_status] += 1

    def apply_transitions(self) -> None:
        pending, self.pending = self.pending, []
        # Alike transitions side by side: a batch writes each kind with one statement.
        pending.sort(key=lambda p: (p.transition.from_status, p.transition.to_status))

        def write(batch: Sequence[Pending]) -> None:
            done = instance_transitions_apply(transitions=[p.transition for p in batch])
            happened = {t.instance.pk for t in done}
            for p in batch:
                if p.transition.instance.pk not in happened:
                    continue
                if p.counted:
                    self.count(p.transition.to_status)
                if p.then is not None:
                    self.guarded(p.transition.instance, p.then)

        self.in_batches("transition(s)", pending, write)

    def named(self, row: Instance) -> list[NovitaInstance]:
        """Live upstream instances under the row's name, oldest first."""
        found = [
            i
            for i in self.by_name.get(row.novita_name, [])
            if i.status not in NovitaInstanceStatus.REMOVING_STATES
        ]
        return sorted(found, key=lambda i: (i.created_at or 0, i.id))

    def upstream_of(self, row: Instance) -> NovitaInstance | None:
        """The row's instance: from the listing, or — when the listing lacks it — from a get
        (a listing may lag behind a create); None once Novita says it does not exist."""
        item = self.by_id.get(row.novita_instance_id)
        if item is not None:
            return item
        try:
            return self.client.get_instance(row.novita_instance_id)
        except novita.NotFound:
            return None

    def action_confirmed(self, row: Instance) -> bool:
        """For a start/stop/restart: its call was accepted before the listing was taken."""
        job = row.current_job
        if job is None or job.kind not in (Action.START, Action.STOP, Action.RESTART):
            return True
        return (
            job.status != JobStatus.PENDING
            and job.status != JobStatus.RUNNING
            and (job.updated_at < self.snapshot_at)
        )

    def overdue(self, row: Instance) -> bool:
        return row.phase_deadline_at is not None and self.now >= row.phase_deadline_at

    def note_upstream(self, row: Instance, item: NovitaInstance) -> None:
        status = item.status + (f"/{item.spot_status}" if item.spot_status else "")
        if row.upstream_status != status:
            row.upstream_status, row.upstream_seen_at = status, self.now
            self.noted.append(row)

    def write_upstream_statuses(self) -> None:
        """The upstream statuses that changed, one statement a batch. They are observations of
        the listing, which no decision reads back (every pass judges its own listing), so they
        are written without a transition's status condition: a row that moved since it was read
        still had this upstream status when the listing was taken. What is kept is the order of
        listings: only a newer listing overwrites a status (two passes despite the lock)."""
        older = Q(upstream_seen_at__isnull=True) | Q(upstream_seen_at__lt=self.now)
        self.in_batches(
            "upstream status(es)",
            self.noted,
            lambda batch: rows_update(
                Instance.objects.filter(older),
                {
                    row.pk: {"upstream_status": row.upstream_status, "upstream_seen_at": self.now}
                    for row in batch
                },
            ),
        )

    def alive(self, row: Instance) -> NovitaInstance | None:
        """The row's upstream instance while it exists (its status noted); None — with the row
        failed as vanished — once Novita no longer has it or is removing it."""
        item = self.upstream_of(row)
        if (
            item is None
            or item.status in GONE
            or item.status in (NovitaInstanceStatus.TO_REMOVE, NovitaInstanceStatus.REMOVING)
        ):
            self.vanished(row)
            return None
        self.note_upstream(row, item)
        return item

    def vanished(self, row: Instance) -> None:
        self.fail(
            row,
            FailureReason.UPSTREAM_VANISHED,
            f"Novita no longer has instance {row.novita_instance_id}.",
        )

    def halted(self, row: Instance, item: NovitaInstance) -> bool:
        """Spot reclaim → preempted (then recovered, if asked for and the reclaim is over); an
        error Novita reports → failed. True if handled."""
        if reclaimed(row, item):
            message = "Novita reclaimed the spot instance."
            if row.on_preempt != OnPreempt.NOTIFY and not recoverable(row):
                message += (
                    f" Automatic recovery is used up ({row.recoveries} of "
                    f"{settings.SPOT_RECOVERY_MAX_ATTEMPTS}): it stays preempted."
                )
            self.move(
                row,
                S.PREEMPTED,
                "preempted",
                message,
                fields={"stopped_at": self.now, "endpoints": self.unhealthy(row)},
                data={"spot_status": item.spot_status, "upstream_status": item.status},
                job_outcome=JobStatus.FAILED,
                then=lambda: self.recover(row, item),
            )
            return True
        failure = failure_of(item) if item.status in HALTED or item.status in GONE else None
        if failure is not None:
            self.fail(row, *failure)
            return True
        return False

    @staticmethod
    def unhealthy(row: Instance) -> list[dict[str, Any]]:
        return [{**e, "healthy": False} for e in row.endpoints]

    # --- per status ---------------------------------------------------------------------------

    def provisioning(self, row: Instance) -> None:
        if row.novita_instance_id:  # recorded while the row was not provisioning: catch up
            self.move(row, S.STARTING, "created", f"Created on Novita as {row.novita_instance_id}.")
            return
        found = self.named(row)
        if not found:
            return  # the provision job creates, waits or looks up by name itself
        keep = found[0]
        with transaction.atomic():
            adopted = Instance.objects.filter(pk=row.pk, novita_instance_id="").update(
                novita_instance_id=keep.id,
                create_sent_at=None,
                provisioned_at=self.now,
            )
            if adopted:
                row.novita_instance_id, row.create_sent_at = keep.id, None
                row.provisioned_at = self.now
                # In the adoption's transaction, not in a batch (rare: a create found by name).
                if instance_transition_apply(
                    transition=Transition(
                        instance=row,
                        to_status=S.STARTING,
                        reason="created",
                        message=f"Created on Novita as {keep.id} (found by name).",
                        data={"novita_instance_id": keep.id, "found_by": "monitor"},
                    )
                ):
                    self.count(S.STARTING)
        for other in found[1:]:
            self.deletes.append((row, other.id, "duplicate"))

    def booting(self, row: Instance) -> None:
        """starting / restarting: until Novita says running, then health checks."""
        if not row.novita_instance_id:
            return
        item = self.alive(row)
        if item is None:
            return
        if not self.action_confirmed(row):
            return
        if self.halted(row, item):
            return
        if item.status == NovitaInstanceStatus.RUNNING:
            self.move(
                row,
                S.HEALTH_CHECKING,
                "running",
                "Novita reports it running; checking the application.",
                fields={"endpoints": endpoints_of(item, [])},
                then=lambda: self.plan(row, item),
            )
            return
        if item.status == NovitaInstanceStatus.EXITED:
            job = row.current_job
            if job is not None and job.kind == Action.START:
                self.move(
                    row,
                    S.STOPPED,
                    "start_failed",
                    "Novita stopped it again while it started.",
                    fields={"endpoints": self.unhealthy(row)},
                    job_outcome=JobStatus.FAILED,
                )
            else:
                self.fail(row, FailureReason.UPSTREAM_ERROR, "Novita stopped it while it started.")
            return
        if self.overdue(row):
            self.fail(
                row,
                FailureReason.STARTUP_TIMEOUT,
                f"Novita did not start it within {settings.STARTUP_TIMEOUT_SECONDS}s "
                f"(last status {item.status}).",
            )

    def health_checking(self, row: Instance) -> None:
        item = self.alive(row)
        if item is None:
            return
        if self.halted(row, item):
            return
        if item.status in HALTED:
            self.fail(
                row,
                FailureReason.UPSTREAM_ERROR,
                "Novita reports it stopped before its application answered.",
            )
            return
        if self.overdue(row):
            self.fail(
                row,
                FailureReason.HEALTH_CHECK_TIMEOUT,
                f"The application did not pass its health checks within "
                f"{settings.HEALTH_CHECK_TIMEOUT_SECONDS}s.",
            )
            return
        if item.status == NovitaInstanceStatus.RUNNING:
            self.plan(row, item)

    def plan(self, row: Instance, item: NovitaInstance) -> None:
        endpoints = endpoints_of(item, row.endpoints)
        if any(not e["url"] for e in endpoints):
            # Listings may omit endpoints; the instance's own page has them.
            endpoints = endpoints_of(
                self.client.get_instance(row.novita_instance_id), row.endpoints
            )
        row.endpoints = endpoints
        self.plans.append((row, check_plan(row)))

    def ready(self, row: Instance) -> None:
        item = self.alive(row)
        if item is None:
            return
        if self.halted(row, item):
            return
        if item.status == NovitaInstanceStatus.EXITED:
            self.move(
                row,
                S.STOPPED,
                "stopped_upstream",
                "Novita reports it stopped (not through novitai).",
                fields={"stopped_at": self.now, "endpoints": self.unhealthy(row)},
            )

    def stopping(self, row: Instance) -> None:
        item = self.alive(row)
        if item is None:
            return
        if not self.action_confirmed(row):
            return
        if item.status == NovitaInstanceStatus.EXITED:
            self.move(
                row,
                S.STOPPED,
                "stopped",
                "Novita reports it stopped.",
                fields={"stopped_at": self.now, "endpoints": self.unhealthy(row)},
                job_outcome=JobStatus.SUCCEEDED,
            )
            return
        if self.overdue(row):
            self.fail(
                row,
                FailureReason.STOP_TIMEOUT,
                f"Novita did not stop it within {settings.STOP_TIMEOUT_SECONDS}s "
                f"(last status {item.status}); it is deleted instead.",
            )

    def stopped(self, row: Instance) -> None:
        item = self.alive(row)
        if item is None:
            return
        if item.status == NovitaInstanceStatus.RUNNING and not reclaimed(row, item):
            # Started outside novitai: it bills, so it is watched (and reported) again. (A spot
            # instance still running in its reclaim notice is not: it is on its way out.)
            self.move(
                row,
                S.HEALTH_CHECKING,
                "started_upstream",
                "Novita reports it running (not started through novitai).",
                fields={"endpoints": endpoints_of(item, [])},
            )

    def preempted(self, row: Instance) -> None:
        """A reclaimed spot instance: recovered once the reclaim is over (on_preempt restart or
        reprovision); started outside novitai, watched again; otherwise left as it is."""
        if not recoverable(row):
            self.stopped(row)
            return
        item = self.upstream_of(row) if row.novita_instance_id else None
        if item is not None:
            self.note_upstream(row, item)
        if (
            item is not None
            and item.status == NovitaInstanceStatus.RUNNING
            and not reclaimed(row, item)
        ):
            self.stopped(row)  # started outside novitai
            return
        self.recover(row, item)

    def recover(self, row: Instance, item: NovitaInstance | None) -> None:
        """Starts a preempted instance again, or provisions a new one, once Novita has finished
        reclaiming it (exited, or gone). Until then — spot instances get a notice period in
        which they still run — it waits; a start then would race the reclaim."""
        if not recoverable(row):
            return
        gone = (
            item is None
            or item.status in GONE
            or item.status in NovitaInstanceStatus.REMOVING_STATES
        )
        if not gone and item is not None and item.status != NovitaInstanceStatus.EXITED:
            return
        attempt = f"recovery {row.recoveries + 1} of {settings.SPOT_RECOVERY_MAX_ATTEMPTS}"
        restart = row.on_preempt == OnPreempt.RESTART and not gone
        try:
            if restart:
                instance_action_request(
                    instance_id=row.pk,
                    tenant=None,
                    action=Action.START,
                    actor=SYSTEM,
                    reason=SPOT_RECOVERY,
                    message=f"Starting it again after the reclaim ({attempt}).",
                    fields={"recoveries": row.recoveries + 1},
                )
            else:
                # Reclaimed for want of capacity: the next offers come from elsewhere. Marked
                # before the new provision job exists (it must not pick this offer), and once a
                # pass (a mass reclaim of one offer is one write and one catalog invalidation).
                offer = (row.novita_product_id, row.cluster_id)
                if all(offer) and offer not in self.reclaimed_offers:
                    offer_capacity_failed(novita_product_id=offer[0], cluster_id=offer[1])
                    self.reclaimed_offers.add(offer)
                why = "" if row.on_preempt == OnPreempt.REPROVISION else " (nothing left to start)"
                old_id = instance_reprovision(
                    instance_id=row.pk,
                    message=f"Provisioning a new instance after the reclaim{why} ({attempt}).",
                )
                if old_id and not gone:
                    self.deletes.append((None, old_id, "replaced"))
        except Conflict:
            return  # it moved meanwhile (a delete, a start by its owner): theirs to follow
        how = OnPreempt.RESTART if restart else OnPreempt.REPROVISION
        SPOT_RECOVERIES.labels(mode=how).inc()
        logger.info("spot instance %s reclaimed: recovered by %s (%s)", row.pk, how, attempt)
        self.count(S.STARTING if restart else S.PENDING)

    def teardown(self, row: Instance) -> None:
        """terminating, and failed with something left upstream: delete every instance under
        its id or name, until Novita reports none (removed or not found)."""
        present: dict[str, NovitaInstance] = {}
        if row.novita_instance_id:
            item = self.upstream_of(row)
            if item is not None and item.status not in GONE:
                present[item.id] = item
        for item in self.named(row):
            present.setdefault(item.id, item)
        if present:
            if not row.novita_instance_id:
                # The create whose outcome was unknown landed: its outcome is known now.
                Instance.objects.filter(pk=row.pk, novita_instance_id="").update(
                    novita_instance_id=next(iter(present)), create_sent_at=None
                )
            reissue = row.delete_requested_at is None or self.now - row.delete_requested_at >= (
                timedelta(seconds=settings.DELETE_REISSUE_SECONDS)
            )
            if reissue:
                for item in present.values():
                    self.deletes.append((row, item.id, row.status))
            if row.status == S.TERMINATING and self.overdue(row):
                logger.error(
                    "instance %s: Novita has not removed %s after %ss; still asking",
                    row.pk,
                    ", ".join(present),
                    settings.DELETE_TIMEOUT_SECONDS,
                )
                self.move(
                    row,
                    row.status,
                    "delete_overdue",
                    "Novita has not removed it in time; the delete is asked again.",
                    fields={
                        "phase_deadline_at": self.now
                        + timedelta(seconds=settings.DELETE_TIMEOUT_SECONDS)
                    },
                    counted=False,
                )
            return
        if not grace_over(row.create_sent_at, self.now):
            return  # a create may still land under our name: look again next pass
        if row.status == S.TERMINATING:
            self.move(
                row,
                S.TERMINATED,
                "deleted",
                "Novita confirms it is gone.",
                fields={"terminated_at": self.now, "endpoints": self.unhealthy(row)},
                job_outcome=JobStatus.SUCCEEDED,
            )
        else:
            self.released.append(row)

    def write_releases(self) -> None:
        """Failed rows with nothing left upstream: `released_at` and a "released" event, for
        those still failed and unreleased (locked: two passes never both release one)."""

        def write(batch: Sequence[Instance]) -> None:
            with transaction.atomic():
                ids = set(
                    Instance.objects.select_for_update()
                    .filter(
                        pk__in=[row.pk for row in batch],
                        status=S.FAILED,
                        released_at__isnull=True,
                    )
                    .order_by("pk")
                    .values_list("pk", flat=True)
                )
                if not ids:
                    return
                Instance.objects.filter(pk__in=ids).update(
                    released_at=self.now, create_sent_at=None
                )
                InstanceEvent.objects.bulk_create(
                    instance_event_build(
                        instance=row,
                        reason="released",
                        message="Novita confirms nothing is left of it.",
                    )
                    for row in batch
                    if row.pk in ids
                )

        self.in_batches("release(s)", self.released, write)

    # --- health checks ------------------------------------------------------------------------

    def health_check(self) -> None:
        if not self.plans:
            return
        results = run_checks(
            [plan for _, plan in self.plans], workers=settings.HEALTH_CHECK_CONCURRENCY
        )
        for row, plan in self.plans:
            self.report.health_checked += 1
            self.apply_checks(row, plan, results.get(plan.key, []))

    def apply_checks(self, row: Instance, plan: CheckPlan, results: list[CheckResult]) -> None:
        by_port = {r.port: r for r in results}
        endpoints = [
            {**e, "healthy": by_port[e["port"]].healthy} if e["port"] in by_port else e
            for e in row.endpoints
        ]
        if (results and all(r.healthy for r in results)) or not plan.targets:
            self.move(
                row,
                S.READY,
                "healthy",
                "The application answers its health checks."
                if plan.targets
                else "Running; no port to check.",
                fields={"endpoints": endpoints, "ready_at": self.now},
                data={"checks": {str(r.port): r.detail for r in results}},
                job_outcome=JobStatus.SUCCEEDED,
            )
            return
        if endpoints != self.stored_endpoints.get(row.pk):  # written only when they change
            self.flags.append((row.pk, endpoints))

    def write_endpoint_flags(self) -> None:
        """New health flags of rows still checking, one conditional statement a batch."""
        self.in_batches(
            "endpoint flag update(s)",
            self.flags,
            lambda batch: rows_update(
                Instance.objects.filter(status=S.HEALTH_CHECKING),
                {pk: {"endpoints": endpoints} for pk, endpoints in batch},
            ),
        )

    # --- deletes and orphans ------------------------------------------------------------------

    def orphans(self, rows: Iterable[Instance]) -> None:
        prefix = f"{settings.NOVITA_NAME_PREFIX}-"
        watched = {row.novita_name: row for row in rows}
        unknown = [n for n in self.by_name if n.startswith(prefix) and n not in watched]
        owned = {
            name: (status, released)
            for name, status, released in Instance.objects.filter(
                novita_name__in=unknown
            ).values_list("novita_name", "status", "released_at")
        }
        for name in unknown:
            status, released = owned.get(name, (None, None))
            live_owner = (
                status is not None
                and status != S.TERMINATED
                and not (status == S.FAILED and released is not None)
            )
            if live_owner:
                continue  # pending (no job claimed yet) and the like: its job owns it
            for item in self.by_name[name]:
                if item.status not in NovitaInstanceStatus.REMOVING_STATES:
                    self.orphan(item, owner=status)
        # A second instance under the name of a row that has its own: a duplicate.
        for row in watched.values():
            if not row.novita_instance_id or row.status in (S.TERMINATING, S.FAILED):
                continue
            for item in self.named(row):
                if item.id != row.novita_instance_id:
                    self.deletes.append((row, item.id, "duplicate"))

    def orphan(self, item: NovitaInstance, *, owner: str | None) -> None:
        key = ORPHAN_KEY.format(item.id)
        first_seen = time.time()
        # Without the cache (Redis down) every orphan is seen for the first time: none is
        # deleted before the cache answers again and its grace has run out there.
        if not cache_guard(
            "orphan_seen",
            lambda: cache.add(key, first_seen, timeout=settings.ORPHAN_GRACE_SECONDS * 3 + 60),
            True,
            cache=cache,
        ):
            first_seen = float(
                cache_guard("orphan_seen", lambda: cache.get(key), None, cache=cache) or first_seen
            )
        age = time.time() - first_seen
        if age < settings.ORPHAN_GRACE_SECONDS:
            logger.info("orphan candidate %s (%s), seen %.0fs ago", item.id, item.name, age)
            return
        logger.warning(
            "deleting orphan %s (%s): its owner is %s",
            item.id,
            item.name,
            owner or "unknown to novitai",
        )
        self.deletes.append((None, item.id, "orphan"))

    def carry_out_deletes(self) -> None:
        done: set[str] = set()
        for row, novita_id, why in self.deletes:
            if novita_id in done:
                continue
            done.add(novita_id)
            try:
                self.client.delete_instance(novita_id)
            except (novita.NotFound, novita.InvalidStateChange):
                pass
            except novita.NovitaError as exc:
                logger.warning("delete of %s (%s) failed: %s", novita_id, why, exc)
                continue
            self.report.deletes += 1
            if why == "orphan":
                ORPHANS_DELETED.inc()
                self.report.orphans_deleted += 1
            elif why == "duplicate" and row is not None:
                DUPLICATES_DELETED.inc()
                self.events.append(
                    instance_event_build(
                        instance=row,
                        reason="duplicate_deleted",
                        message=f"A second upstream instance ({novita_id}) was deleted.",
                        data={"novita_instance_id": novita_id},
                    )
                )
            if row is not None and why != "duplicate":
                self.delete_requested.append(row.pk)
        now = timezone.now()
        self.in_batches(
            "delete time(s)",
            self.delete_requested,
            lambda batch: Instance.objects.filter(pk__in=batch).update(delete_requested_at=now),
        )
        self.in_batches("event(s)", self.events, InstanceEvent.objects.bulk_create)
