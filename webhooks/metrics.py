"""Webhook delivery metrics: counters where work happens, row counts at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

deliveries = Counter(
    "novitai_webhook_deliveries_total",
    "Webhook delivery attempts by what they did to the delivery.",
    ["outcome"],  # delivered, retry, failed, gone
)
attempts = Counter(
    "novitai_webhook_attempts_total",
    "Webhook POST attempts by result.",
    ["result"],  # success, http_error, gone, timeout, connection_error, tls_error, ...
)
delivery_lag = Histogram(
    "novitai_webhook_delivery_lag_seconds",
    "From an event's occurrence to its first successful delivery.",
    buckets=(0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 7200, 21600, 43200, 86400, 172800),
)


class DeliveryStatusCollector:
    """novitai_webhook_deliveries_by_status{status} and novitai_webhook_deliveries_due, read
    from the database at scrape time (exact whichever process serves the scrape)."""

    def collect(self) -> Iterable[Metric]:
        from webhooks.selectors import delivery_counts_by_status, delivery_due_count

        by_status = GaugeMetricFamily(
            "novitai_webhook_deliveries_by_status",
            "Webhook deliveries by status.",
            labels=["status"],
        )
        for status, count in delivery_counts_by_status().items():
            by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily(
            "novitai_webhook_deliveries_due",
            "Pending webhook deliveries whose next attempt is due now.",
            value=delivery_due_count(),
        )

    def __repr__(self) -> str:
        return "DeliveryStatusCollector()"


status_collector = DeliveryStatusCollector()
