"""Prometheus metrics of the Novita client.

Counters and the histogram are plain prometheus_client metrics, labelled by endpoint (the v1 path,
which never holds an id: ids travel in the query or the body). The breaker's state lives in the
cache, so it is read at scrape time by a collector registered with novitai.metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from novitai.metrics import register_scrape_collector
from novitai.novita.breaker import BreakerState
from novitai.novita.config import NovitaConfig

REQUESTS = Counter(
    "novita_requests",
    "Calls to the Novita API, by endpoint, method and outcome (ok or the error class).",
    ["endpoint", "method", "outcome"],
)
DURATION = Histogram(
    "novita_request_duration_seconds",
    "Time from sending a request to Novita to having its answer (or failure).",
    ["endpoint"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0),
)
RETRIES = Counter(
    "novita_retries",
    "Retries of calls to Novita after a 5xx, a timeout, a connection error or a 429.",
    ["endpoint"],
)

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def outcome_label(error: BaseException | None) -> str:
    """ "ok", or the error class in snake case: not_found, unknown_outcome, circuit_open…"""
    if error is None:
        return "ok"
    return _CAMEL.sub("_", type(error).__name__).lower()


class BreakerStateCollector:
    """novita_circuit_breaker_state{state} (1 for the current state, 0 for the others) and
    novita_circuit_breaker_consecutive_failures, read from the shared cache at scrape time."""

    def collect(self) -> Iterable[Metric]:
        snapshot = NovitaConfig.from_settings().breaker().snapshot()
        state = GaugeMetricFamily(
            "novita_circuit_breaker_state",
            "State of the shared Novita circuit breaker: 1 for the current state.",
            labels=["state"],
        )
        for candidate in BreakerState:
            state.add_metric([candidate.value], 1.0 if candidate is snapshot.state else 0.0)
        failures = GaugeMetricFamily(
            "novita_circuit_breaker_consecutive_failures",
            "Consecutive failed calls to Novita (5xx, timeouts, connection errors).",
            value=snapshot.consecutive_failures,
        )
        return [state, failures]


BREAKER_COLLECTOR = BreakerStateCollector()
register_scrape_collector(BREAKER_COLLECTOR)
