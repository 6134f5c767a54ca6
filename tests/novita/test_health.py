"""Novita's part of /health/ready: reachability (cached) and the breaker's state."""

from __future__ import annotations

from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.health import check_novita
from novitai.novita.errors import CircuitOpen, Unavailable
from novitai.novita.health import novita_health
from tests.novita.conftest import another_client, api_calls
from tests.novita.test_failures import closed_port


def test_reachable_and_closed(novita_settings: SandboxControl, fast: Any) -> None:
    result = check_novita()
    assert result["reachable"] is True
    assert result["breaker"] == {
        "state": "closed",
        "consecutive_failures": 0,
        "seconds_until_probe": 0.0,
    }
    assert result["base_url"] == novita_settings.api_base
    assert result["latency_ms"] >= 0
    # Cached in the shared cache: probes from every process cost Novita one call per period.
    assert novita_health()["checked_at"] == result["checked_at"]
    assert len(api_calls(novita_settings, "/clusters")) == 1


def test_unreachable_raises_with_both_parts(settings: Any, fast: Any) -> None:
    settings.NOVITA_API_BASE_URL = f"http://127.0.0.1:{closed_port()}/gpu-instance/openapi/v1"
    settings.NOVITA_API_KEY = "k"
    with pytest.raises(Unavailable) as caught:
        novita_health()
    assert str(caught.value).startswith("Novita unreachable: could not connect to Novita")
    assert "circuit breaker closed (1 consecutive failures)" in str(caught.value)


def test_a_refused_key_is_reported(novita_settings: SandboxControl, fast: Any) -> None:
    fast.NOVITA_API_KEY = "wrong"
    with pytest.raises(Unavailable, match="Novita unreachable: Novita refused the API key"):
        novita_health()


def test_an_open_breaker_is_reported_without_calling(
    novita_settings: SandboxControl, fast: Any
) -> None:
    fast.NOVITA_BREAKER_FAILURE_THRESHOLD = 2
    fast.NOVITA_MAX_RETRIES = 2  # the third attempt finds the breaker open
    novita_settings.set_faults(fail_next=[{"path": "/products", "status": 500, "count": -1}])
    with pytest.raises(CircuitOpen):
        another_client().list_products()
    with pytest.raises(Unavailable) as caught:
        novita_health()
    assert str(caught.value) == "circuit breaker open (2 consecutive failures)"
    assert api_calls(novita_settings, "/clusters") == []
