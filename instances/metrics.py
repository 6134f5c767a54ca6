"""Instance metrics: instances by status (read from the database at scrape time), time from
request to ready (histogram by product and region), orphans and duplicates deleted, idle
stops, spot recoveries and waits for capacity (counters)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from novitai.metrics import register_scrape_collector

READY_SECONDS = Histogram(
    "novitai_instance_ready_seconds",
    "Seconds from the create request to the instance answering its health checks.",
    ["product", "region"],
    buckets=(5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1200, 1800),
)
ORPHANS_DELETED = Counter(
    "novitai_orphan_instances_deleted_total",
    "Upstream instances with novitai's name prefix and no live owner, deleted.",
)
DUPLICATES_DELETED = Counter(
    "novitai_duplicate_instances_deleted_total",
    "Second upstream instances found for one novitai instance, deleted.",
)
IDLE_STOPS = Counter(
    "novitai_instances_idle_stopped_total",
    "Ready instances stopped (or deleted, on_idle delete) because no activity came within "
    "their idle timeout.",
)
SPOT_RECOVERIES = Counter(
    "novitai_spot_recoveries_total",
    "Reclaimed spot instances recovered automatically, by how (restart, reprovision).",
    ["mode"],
)

CAPACITY_ATTEMPTS = Counter(
    "novitai_capacity_wait_attempts_total",
    "Attempts of instances waiting for capacity, by outcome (obtained: created on Novita; "
    "waiting: still no capacity).",
    ["outcome"],
)
CAPACITY_WAITS = Counter(
    "novitai_capacity_waits_ended_total",
    "Waits for capacity that ended, by how (obtained, expired: failed no_capacity, deleted).",
    ["outcome"],
)


class InstancesByStatusCollector:
    """novitai_instances{status}: exact whichever process serves the scrape."""

    def collect(self) -> Iterable[Metric]:
        from instances.models import Instance, InstanceStatus

        counts = dict.fromkeys(InstanceStatus.values, 0)
        for row in Instance.objects.values("status").annotate(n=Count("id")):
            counts[row["status"]] = row["n"]
        gauge = GaugeMetricFamily(
            "novitai_instances", "Instances by status (from the database).", labels=["status"]
        )
        for status, n in counts.items():
            gauge.add_metric([status], n)
        yield gauge


class GpuUtilizationCollector:
    """novitai_instance_gpu_utilization_percent{instance}: the newest GPU point read for each
    ready instance with an idle_policy (the busiest card), and its age."""

    def collect(self) -> Iterable[Metric]:
        from instances.models import Instance, InstanceStatus

        value = GaugeMetricFamily(
            "novitai_instance_gpu_utilization_percent",
            "The newest GPU utilization read from Novita (idle_policy instances, ready).",
            labels=["instance"],
        )
        at = GaugeMetricFamily(
            "novitai_instance_gpu_utilization_timestamp",
            "Unix time of that point (Novita's, about a minute behind).",
            labels=["instance"],
        )
        rows = Instance.objects.filter(
            status=InstanceStatus.READY, gpu_utilization__isnull=False
        ).values_list("pk", "gpu_utilization", "gpu_utilization_at")
        for pk, percent, when in rows:
            value.add_metric([str(pk)], percent or 0.0)
            if when is not None:
                at.add_metric([str(pk)], when.timestamp())
        yield value
        yield at


def register_collectors() -> None:
    register_scrape_collector(InstancesByStatusCollector())
    register_scrape_collector(GpuUtilizationCollector())
