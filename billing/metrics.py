"""Spend metrics, read from the ledger at scrape time (exact whichever process serves it):
novitai_spend_usd_total{tenant} (a counter: what the tenant's instances cost so far) and
novitai_spend_rate_usd_per_hour{tenant} (what they cost an hour right now)."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from novitai.metrics import register_scrape_collector


class SpendCollector:
    def collect(self) -> Iterable[Metric]:
        from billing.selectors import spend_by_tenant

        spent = CounterMetricFamily(
            "novitai_spend_usd", "USD spent so far (the cost ledger).", labels=["tenant"]
        )
        rate = GaugeMetricFamily(
            "novitai_spend_rate_usd_per_hour",
            "USD an hour the tenant's instances cost right now (the cost ledger).",
            labels=["tenant"],
        )
        for row in spend_by_tenant(now=timezone.now()):
            spent.add_metric([row.tenant], float(row.spent_usd))
            rate.add_metric([row.tenant], float(row.rate_usd_per_hour))
        yield spent
        yield rate


def register_collectors() -> None:
    register_scrape_collector(SpendCollector())
