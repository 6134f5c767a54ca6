"""Volume operations on Novita, by operation (create, grow, delete) and outcome."""

from __future__ import annotations

from prometheus_client import Counter

VOLUME_OPERATIONS = Counter(
    "novitai_volume_operations_total",
    "Network volume operations asked of Novita, by operation and outcome.",
    ["operation", "outcome"],
)
IMAGE_SAVES = Counter(
    "novitai_image_saves_total",
    "Image saves ended, by outcome (succeeded, failed, cancelled).",
    ["outcome"],
)
