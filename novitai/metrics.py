"""/metrics: Prometheus exposition.

Counters and histograms are incremented wherever work happens (web, worker, beat). With
PROMETHEUS_MULTIPROC_DIR set (make run, gunicorn) every process writes its samples there and this
view merges them. State that lives in the database or the cache (instances by status, the
circuit breaker) is read at scrape time by collectors registered with `register_scrape_collector`,
so it is exact whichever process serves the scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any, Protocol

from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)


class ScrapeCollector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


_scrape_collectors: list[ScrapeCollector] = []


def register_scrape_collector(collector: ScrapeCollector) -> None:
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


class _Guarded:
    """A failing collector (database down) costs its own series, not the whole scrape."""

    def __init__(self, collector: ScrapeCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        try:
            return list(self.collector.collect())
        except Exception:
            logger.warning("metrics collector %r failed", self.collector, exc_info=True)
            return []


def build_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    for collector in _scrape_collectors:
        registry.register(_Guarded(collector))
    return registry


def metrics_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return HttpResponse(generate_latest(build_registry()), content_type=CONTENT_TYPE_LATEST)
