"""Catalog metrics read at scrape time: the last successful sync, from the database, so that the
figure is right whichever process serves /metrics. (Sync counters and the duration histogram are
in services.py; cache lookups in caches.py.)"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from novitai.metrics import register_scrape_collector


class CatalogSyncCollector:
    def collect(self) -> Iterable[Metric]:
        from catalog.models import CatalogState

        state = CatalogState.objects.filter(pk=CatalogState.SINGLETON_ID).first()
        gauge = GaugeMetricFamily(
            "novitai_catalog_last_success_timestamp",
            "Unix time of the last successful catalog sync (0: never).",
        )
        last = state.last_success_at if state is not None else None
        gauge.add_metric([], last.timestamp() if last is not None else 0.0)
        yield gauge


def register_collectors() -> None:
    register_scrape_collector(CatalogSyncCollector())
