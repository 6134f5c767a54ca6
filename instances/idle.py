"""Idle stop: a ready instance with an `idle_timeout` and no activity for that long is stopped
(or deleted, with on_idle "delete").

Activity is becoming ready (`ready_at`) or a heartbeat (`last_active_at`, POST …/heartbeat/);
an instance is due at `idle_stop_at` (selectors): the later of the two plus its timeout.

    instances_idle_stop()   # beat, every IDLE_CHECK_INTERVAL_SECONDS (task instances.idle_stop)

finds the due instances in the database (one query, oldest due first, a batch at most), and
stops each through `instance_action_request` (a stop job, sent on commit) — or deletes it
through `instance_delete_request` when its on_idle is "delete" —, with the row locked
and its idleness judged again under the lock: a heartbeat that lands between the query and the
lock keeps the instance ready, and of two sweeps running at once the second finds it stopping.

With an `idle_policy` (instances/gpu_idle.py) the pass first reads the GPU metrics due (a batch,
each instance at most once a minute), and an instance is idle when its GPU says so and — if it
also has an idle timeout — the heartbeat says so too: both, never either.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from instances.gpu_idle import gpu_idle_candidates, gpu_metrics_refresh, gpu_says_idle
from instances.metrics import IDLE_STOPS
from instances.models import Instance, InstanceStatus, OnIdle
from instances.selectors import idle_stop_at
from instances.services import Action, instance_action_request, instance_delete_request
from novitai.errors import Conflict, NotFound

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
REASON = "idle_timeout"
ACTOR = "system"


def instances_idle_due(*, now: datetime, limit: int = BATCH_SIZE) -> list[uuid.UUID]:
    """Ids of ready instances whose idle timeout has run out by `now`, oldest due first. The
    same rule as `idle_stop_at`, in SQL (Postgres and SQLite): each Coalesce stands in for a
    missing side, since GREATEST skips NULLs on Postgres and SQLite's MAX() does not."""
    active = Greatest(
        Coalesce("ready_at", "last_active_at"), Coalesce("last_active_at", "ready_at")
    )
    due = ExpressionWrapper(active + F("idle_timeout"), output_field=DateTimeField())
    by_heartbeat = list(
        Instance.objects.filter(
            status=InstanceStatus.READY, idle_timeout__isnull=False, idle_gpu_below__isnull=True
        )
        .annotate(idle_stop_at=due)
        .filter(idle_stop_at__lte=now)
        .order_by("idle_stop_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    by_gpu = [i.pk for i in gpu_idle_candidates(limit=limit) if idle_message(i, now) is not None]
    return (by_heartbeat + by_gpu)[:limit]


def idle_message(instance: Instance, now: datetime) -> str | None:
    """Why the instance is idle by `now` (its heartbeat timeout ran out, its GPU stayed below
    its threshold, or both when it has both rules), or None when it is not."""
    reasons = []
    if instance.idle_timeout is not None:
        due = idle_stop_at(instance)
        if due is None or due > now:
            return None
        reasons.append(f"no activity for {int(instance.idle_timeout.total_seconds())} s")
    if instance.idle_gpu_below is not None:
        if not gpu_says_idle(instance) or instance.idle_gpu_for is None:
            return None
        reasons.append(
            f"GPU utilization below {instance.idle_gpu_below:g}% for "
            f"{int(instance.idle_gpu_for.total_seconds())} s"
        )
    text = " and ".join(reasons)
    return text[:1].upper() + text[1:] if text else None


def instance_idle_stop(*, instance_id: uuid.UUID, now: datetime) -> bool:
    """Stops the instance if it is still ready and idle by `now`, judged with its row locked.
    False when it is not (a heartbeat came, it moved, it is gone)."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().filter(pk=instance_id).first()
        if instance is None:
            return False
        why = idle_message(instance, now)
        if why is None:
            return False
        if instance.on_idle == OnIdle.DELETE:
            instance_delete_request(
                instance_id=instance.pk,
                actor=ACTOR,
                tenant=None,
                reason=REASON,
                message=f"{why}: deleted.",
            )
        else:
            instance_action_request(
                instance_id=instance.pk,
                tenant=None,
                action=Action.STOP,
                actor=ACTOR,
                reason=REASON,
                message=f"{why}: stopped.",
            )
    IDLE_STOPS.inc()
    logger.info(
        "instance %s: idle (%s): %s",
        instance.pk,
        why,
        "deleting" if instance.on_idle == OnIdle.DELETE else "stopping",
        extra={"instance_id": str(instance.pk)},
    )
    return True


def instances_idle_stop(now: datetime | None = None, *, limit: int = BATCH_SIZE) -> int:
    """Stops the ready instances idle by `now` (a batch at most): how many it stopped. An
    instance that moved meanwhile is skipped; the next run picks up what a full batch left."""
    now = now or timezone.now()
    gpu_metrics_refresh(now=now)  # a Novita error leaves an instance unread, not the pass
    stopped = 0
    for instance_id in instances_idle_due(now=now, limit=limit):
        try:
            stopped += instance_idle_stop(instance_id=instance_id, now=now)
        except (Conflict, NotFound) as exc:
            logger.info(
                "instance %s: idle stop skipped (%s)",
                instance_id,
                exc.message,
                extra={"instance_id": str(instance_id)},
            )
    return stopped
