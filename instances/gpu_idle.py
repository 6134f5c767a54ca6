"""Idle by GPU utilization: an instance's `idle_policy {gpu_utilization_below, for_seconds}`.

Novita's GPU metrics (`metrics/gpu/instance`, one instance a call, points about a minute old)
are read sparingly, in the idle pass (instances/idle.py), not the monitoring pass: only ready
instances with a policy, each at most every GPU_METRICS_READ_INTERVAL_SECONDS, at most
GPU_METRICS_BATCH_SIZE a pass (the longest unread first). Each read takes the points since the
last one and keeps the newest value (`gpu_utilization`, `gpu_utilization_at`) and since when
every point has been below the threshold (`gpu_idle_since`, on the metrics' own clock; a point
at or above it clears it). No points is "no data", never "idle".

The GPU says idle once its newest point is `for_seconds` past `gpu_idle_since`. Combined with
the heartbeat (`idle_timeout_seconds`), explicitly: **both** must say idle — a caller that
heartbeats keeps a GPU-idle instance, and a busy GPU keeps one without heartbeats. With only
one of the two, that one decides.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from prometheus_client import Counter

from instances.models import Instance, InstanceStatus
from novitai.novita import errors as novita
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.types import GpuMetrics

logger = logging.getLogger(__name__)

INTERVAL = 60  # seconds between metric points asked for
# The window's end is this far ahead of our clock: a skew between ours and Novita's never hides
# the newest points (Novita returns none newer than its own now, less its lag).
END_SLACK_SECONDS = 3600
GPU_METRICS_READS = Counter(
    "novitai_gpu_metrics_reads_total",
    "Reads of Novita's GPU metrics for idle policies, by outcome (points, empty, error).",
    ["outcome"],
)


def _unix(value: datetime) -> int:
    return int(value.timestamp())


def _when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def gpu_series(metrics: GpuMetrics) -> list[tuple[int, float]]:
    """(time, the highest card's value) per point time, oldest first."""
    highest: dict[int, float] = {}
    for card in metrics.gpus:
        for point in card.utilization:
            highest[point.time] = max(point.value, highest.get(point.time, point.value))
    return sorted(highest.items())


def gpu_state_after(
    instance: Instance, series: list[tuple[int, float]]
) -> tuple[float | None, datetime | None, datetime | None]:
    """(newest value, its time, idle since) once `series` is taken in."""
    value, at = instance.gpu_utilization, instance.gpu_utilization_at
    idle_since = instance.gpu_idle_since
    threshold = instance.idle_gpu_below if instance.idle_gpu_below is not None else 0.0
    newest = _unix(at) if at is not None else None
    for time, point in series:
        if newest is not None and time <= newest:
            continue
        value, at, newest = point, _when(time), time
        if point >= threshold:
            idle_since = None
        elif idle_since is None:
            idle_since = at
    return value, at, idle_since


def gpu_metrics_due(*, now: datetime, limit: int) -> list[Instance]:
    """Ready instances with a GPU rule whose metrics were not read within the interval."""
    stale = now - timedelta(seconds=settings.GPU_METRICS_READ_INTERVAL_SECONDS)
    return list(
        Instance.objects.filter(status=InstanceStatus.READY, idle_gpu_below__isnull=False)
        .exclude(novita_instance_id="")
        .filter(Q(gpu_metrics_read_at__isnull=True) | Q(gpu_metrics_read_at__lt=stale))
        .order_by(F("gpu_metrics_read_at").asc(nulls_first=True), "pk")
        .only(
            "id",
            "status",
            "novita_instance_id",
            "ready_at",
            "idle_gpu_below",
            "gpu_utilization",
            "gpu_utilization_at",
            "gpu_idle_since",
        )[:limit]
    )


def gpu_metrics_refresh(*, now: datetime, client: NovitaClient | None = None) -> int:
    """Reads the GPU metrics of the instances due (a batch at most): how many were read."""
    rows = gpu_metrics_due(now=now, limit=settings.GPU_METRICS_BATCH_SIZE)
    if not rows:
        return 0
    client = client or get_client()
    for row in rows:
        _read_one(client, row, now)
    return len(rows)


def _read_one(client: NovitaClient, row: Instance, now: datetime) -> None:
    since = row.gpu_utilization_at or row.ready_at or now
    start = max(since, now - timedelta(days=1))
    try:
        metrics = client.gpu_metrics(
            row.novita_instance_id,
            start_time=_unix(start),
            end_time=_unix(now) + END_SLACK_SECONDS,
            interval=INTERVAL,
        )
    except novita.NotFound:
        GPU_METRICS_READS.labels("gone").inc()
        Instance.objects.filter(pk=row.pk).update(gpu_metrics_read_at=now)
        return
    except novita.NovitaError as exc:
        GPU_METRICS_READS.labels("error").inc()
        logger.warning("instance %s: GPU metrics not read: %s", row.pk, exc)
        Instance.objects.filter(pk=row.pk).update(gpu_metrics_read_at=now)
        return
    series = gpu_series(metrics)
    GPU_METRICS_READS.labels("points" if series else "empty").inc()
    value, at, idle_since = gpu_state_after(row, series)
    Instance.objects.filter(pk=row.pk, status=InstanceStatus.READY).update(
        gpu_utilization=value,
        gpu_utilization_at=at,
        gpu_idle_since=idle_since,
        gpu_metrics_read_at=now,
    )


def gpu_says_idle(instance: Instance) -> bool:
    """Every GPU point below the threshold for `for_seconds`, by the metrics' own clock."""
    if instance.idle_gpu_below is None or instance.idle_gpu_for is None:
        return False
    since, newest = instance.gpu_idle_since, instance.gpu_utilization_at
    if since is None or newest is None:
        return False
    return newest - since >= instance.idle_gpu_for


def gpu_idle_candidates(*, limit: int) -> list[Instance]:
    """Ready instances whose GPU has been below its threshold for a while (judged by the
    caller with the heartbeat, under the row's lock)."""
    return list(
        Instance.objects.filter(
            status=InstanceStatus.READY,
            idle_gpu_below__isnull=False,
            gpu_idle_since__isnull=False,
        ).order_by("gpu_idle_since", "pk")[:limit]
    )
