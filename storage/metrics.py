"""Volume operations on Novita, by operation (create, grow, delete) and outcome."""

from __future__ import annotations

from prometheus_client import Counter

VOLUME_OPERATIONS = Counter(
    "novitai_volume_operations_total",
    "Network volume operations asked of Novita, by operation and outcome.",
    ["operation", "outcome"],
)
