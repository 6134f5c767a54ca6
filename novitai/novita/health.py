"""Novita reachability for /health/ready (replaced by the client's probe)."""

from __future__ import annotations

from typing import Any


def novita_health() -> dict[str, Any]:
    raise RuntimeError("the Novita client is not built yet")
