"""Waiting for capacity: instances created with `capacity_wait_seconds` that found no acceptable
offer wait in `waiting_for_capacity`, holding no GPU, and the capacity sweep tries them again.

The sweep (beat, every CAPACITY_SWEEP_INTERVAL_SECONDS; one at a time, under a lock) reads only
the database and the stored catalog; the only Novita calls waiting costs are the creates of its
attempts (the catalog syncs that reveal capacity run anyway). For each waiting instance, oldest
first (created_at, then id: first come, first served across tenants):

- its wait is over (waiting_since + capacity_wait_seconds) → failed `no_capacity`, naming the wait
  and what it tried;
- the stored catalog shows no acceptable offer → it stays (nothing to try);
- else it is tried when a catalog sync happened since its last attempt (the sync that shows the
  offer available again) or its backoff is over (`next_attempt_at`: CAPACITY_RETRY_BASE_SECONDS
  doubling per attempt up to CAPACITY_RETRY_MAX_SECONDS), and its tenant's GPU quota allows it
  (a waiting instance counts toward the instance quota, not the GPU quota);
- an attempt is the provision job run again at once, in the sweep, on every acceptable offer
  (those remembered as short of capacity too): it ends created (starting), or waiting again.

Fairness: instances asking for the same thing (products, billing mode, GPUs, max price, root
disk) form a queue; a younger one is not tried while an older one of its queue is not due or has
just got nothing, so that capacity for n goes to the n oldest, and a queue without capacity costs
the creates of one attempt, not one per waiting instance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from catalog.selectors import catalog_last_sync_at, offers_select
from instances.lifecycle import Transition, instance_transition_apply
from instances.metrics import CAPACITY_ATTEMPTS, CAPACITY_WAITS
from instances.models import BillingMode, FailureReason, Instance, InstanceStatus, SpotFallback
from instances.provisioning import (
    HANDED_OVER,
    capacity_deadline,
    describe_tried,
    instance_provision_run,
    waited_text,
)
from jobs.selectors import JobStatus
from jobs.services import job_resume
from novitai.errors import ServiceError
from novitai.locks import held_lock

logger = logging.getLogger(__name__)

S = InstanceStatus
LOCK_NAME = "instances.capacity_sweep"
# Attempts one sweep makes at most; with more due, the next sweep is sent at once.
MAX_ATTEMPTS_PER_SWEEP = 50


@dataclass
class SweepReport:
    waiting: int = 0
    attempts: int = 0
    obtained: int = 0
    expired: int = 0
    skipped: bool = False  # another sweep held the lock
    more: bool = False  # attempts left for the next sweep


def queue_key(row: Instance) -> tuple[Any, ...]:
    """Instances that ask for the same thing share a queue (first come, first served)."""
    names = tuple(sorted(str(n).strip().casefold() for n in row.product_names))
    mode = requested_mode(row)
    return (
        names,
        mode,
        row.spot_fallback,
        row.gpu_num,
        str(row.max_price_per_hour),
        row.rootfs_size,
    )


def requested_mode(row: Instance) -> str:
    return row.billing_mode_requested or row.billing_mode


def instances_capacity_sweep(*, now: datetime | None = None) -> SweepReport:
    """One pass over the instances waiting for capacity (see the module's docstring)."""
    with held_lock(LOCK_NAME) as held:
        if not held:
            return SweepReport(skipped=True)
        return _sweep(now)


def _sweep(now: datetime | None) -> SweepReport:
    report = SweepReport()
    rows = list(
        Instance.objects.filter(status=S.WAITING_FOR_CAPACITY)
        .select_related("tenant", "current_job")
        .order_by("created_at", "id")
    )
    report.waiting = len(rows)
    blocked: set[tuple[Any, ...]] = set()
    gpus_in_use: dict[Any, int] = {}
    last_sync = catalog_last_sync_at()
    for row in rows:
        at = now or timezone.now()
        if at >= capacity_deadline(row, row.waiting_since or row.created_at):
            report.expired += _expire(row, at)
            continue
        key = queue_key(row)
        if key in blocked:
            continue
        if report.attempts >= MAX_ATTEMPTS_PER_SWEEP:
            report.more = True
            break
        why = _due(row, at, last_sync)
        if why is None or not _gpu_quota_allows(row, gpus_in_use):
            blocked.add(key)  # its younger peers wait their turn
            continue
        report.attempts += 1
        if _attempt(row, why):
            report.obtained += 1
            gpus_in_use[row.tenant_id] = gpus_in_use.get(row.tenant_id, 0) + row.gpu_num
        else:
            blocked.add(key)
    if report.attempts or report.expired:
        logger.info(
            "capacity sweep: %d waiting, %d attempt(s), %d obtained, %d expired",
            report.waiting,
            report.attempts,
            report.obtained,
            report.expired,
        )
    return report


def _due(row: Instance, now: datetime, last_sync: datetime | None) -> str | None:
    """Why it is tried now, or None: the stored catalog must show an acceptable offer, and a
    sync since its last attempt (or the end of its backoff) makes it due."""
    modes = [requested_mode(row)]
    if row.spot_fallback == SpotFallback.ON_DEMAND:
        modes.append(BillingMode.ON_DEMAND)
    try:
        available = any(
            offers_select(
                product_names=row.product_names,
                gpu_num=row.gpu_num,
                region=row.preferred_region or None,
                billing_mode=mode,
                max_price_per_hour=row.max_price_per_hour,
                rootfs_size=row.rootfs_size,
                now=now,
                ignore_capacity_memory=True,
            ).offers
            for mode in modes
        )
    except ServiceError:
        return None
    if not available:
        return None
    checked = row.capacity_checked_at
    if last_sync is not None and (checked is None or last_sync > checked):
        return "the catalog shows an acceptable offer available"
    if row.next_attempt_at is None or now >= row.next_attempt_at:
        return "its backoff is over"
    return None


def _gpu_quota_allows(row: Instance, gpus_in_use: dict[Any, int]) -> bool:
    """A waiting instance holds no GPU: it may take one only within its tenant's GPU quota."""
    limit = row.tenant.max_gpus
    if limit is None:
        return True
    if row.tenant_id not in gpus_in_use:
        gpus_in_use[row.tenant_id] = instance_gpus_held(row.tenant_id)
    return gpus_in_use[row.tenant_id] + row.gpu_num <= limit


def instance_gpus_held(tenant_id: Any) -> int:
    """GPUs a tenant's instances count toward its GPU quota: all but terminated and waiting."""
    held = (
        Instance.objects.filter(tenant_id=tenant_id)
        .exclude(status__in=(S.TERMINATED, S.WAITING_FOR_CAPACITY))
        .aggregate(n=Sum("gpu_num"))
    )
    return int(held["n"] or 0)


def _attempt(row: Instance, why: str) -> bool:
    """waiting_for_capacity → provisioning, and its provision job run at once; True when it got
    an instance on Novita."""
    job = row.current_job
    if job is None or job.status != JobStatus.WAITING or not job_resume(job=job):
        logger.warning("instance %s waits without a waiting provision job", row.pk)
        return False
    attempt = row.capacity_attempts + 1
    moved = instance_transition_apply(
        transition=Transition(
            instance=row,
            to_status=S.PROVISIONING,
            reason="capacity_retry",
            message=f"Trying again for capacity (attempt {attempt}): {why}.",
            # The mode asked for first again (a spot request falls back to on demand anew).
            fields={
                "offers_tried": [],
                "next_attempt_at": None,
                "billing_mode": requested_mode(row),
            },
            data={"attempt": attempt},
        )
    )
    if not moved:
        return False  # deleted or changed meanwhile: its new owner follows it
    instance_provision_run(job_id=str(job.pk), capacity_retry=True)
    status = Instance.objects.filter(pk=row.pk).values_list("status", flat=True).first()
    obtained = status in HANDED_OVER
    CAPACITY_ATTEMPTS.labels(outcome="obtained" if obtained else "waiting").inc()
    if obtained:
        CAPACITY_WAITS.labels(outcome="obtained").inc()
    return obtained


def _expire(row: Instance, now: datetime) -> int:
    """The wait is over: failed no_capacity, naming the wait and what its attempts tried."""
    tried = row.offers_tried
    what = f" Last tried: {describe_tried(tried)}." if tried else ""
    done = instance_transition_apply(
        transition=Transition.to_failed(
            instance=row,
            reason=FailureReason.NO_CAPACITY,
            message=f"No capacity in any acceptable offer. {waited_text(row, now)}{what}",
            data={"attempts": row.capacity_attempts, "offers_tried": tried},
            fields={"next_attempt_at": None},
        )
    )
    if done:
        CAPACITY_WAITS.labels(outcome="expired").inc()
    return int(done)
