"""The circuit breaker, shared through the "novita" cache by every client (every process)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from prometheus_client import generate_latest

from novita_sandbox.control import SandboxControl
from novitai.metrics import build_registry
from novitai.novita.breaker import PROBE_KEY, BreakerState
from novitai.novita.client import NovitaClient
from novitai.novita.errors import CapacityUnavailable, CircuitOpen, NotFound, Unavailable
from novitai.novita.shared import novita_cache
from tests.novita.conftest import another_client, api_calls, create_request

RESET = 0.3


@pytest.fixture
def breaker_settings(novita_settings: SandboxControl, fast: Any) -> SandboxControl:
    fast.NOVITA_BREAKER_FAILURE_THRESHOLD = 3
    fast.NOVITA_BREAKER_RESET_SECONDS = RESET
    return novita_settings


def fail_clusters(sandbox: SandboxControl, count: int = -1, status: int = 503) -> None:
    sandbox.set_faults(fail_next=[{"path": "/clusters", "status": status, "count": count}])


def open_breaker(sandbox: SandboxControl) -> NovitaClient:
    fail_clusters(sandbox)
    first = another_client()
    # Three attempts fail (threshold 3); the fourth attempt finds the breaker open.
    with pytest.raises(CircuitOpen):
        first.list_clusters()
    assert len(api_calls(sandbox, "/clusters")) == 3
    return first


def wait_for_half_open() -> None:
    time.sleep(RESET + 0.05)


def test_a_burst_of_5xx_opens_it_for_every_client(breaker_settings: SandboxControl) -> None:
    open_breaker(breaker_settings)
    second = another_client()
    snapshot = second.breaker_snapshot()
    assert (snapshot.state, snapshot.consecutive_failures) == (BreakerState.OPEN, 3)
    with pytest.raises(CircuitOpen) as caught:
        second.list_instances()
    assert 0 < caught.value.retry_after <= RESET
    assert caught.value.retryable
    assert api_calls(breaker_settings, "/gpu/instances") == []  # nothing sent


def test_it_closes_when_the_probe_succeeds(breaker_settings: SandboxControl) -> None:
    open_breaker(breaker_settings)
    breaker_settings.set_faults(fail_next=[])
    wait_for_half_open()
    second = another_client()
    assert second.breaker_snapshot().state is BreakerState.HALF_OPEN
    assert len(second.list_clusters()) == 5
    assert (second.breaker_snapshot().state, second.breaker_snapshot().consecutive_failures) == (
        BreakerState.CLOSED,
        0,
    )
    assert len(api_calls(breaker_settings, "/clusters")) == 4


def test_it_reopens_when_the_probe_fails(breaker_settings: SandboxControl) -> None:
    open_breaker(breaker_settings)
    wait_for_half_open()
    second = another_client()
    with pytest.raises(CircuitOpen):  # the probe failed, the retry found it open again
        second.list_clusters()
    assert len(api_calls(breaker_settings, "/clusters")) == 4  # one probe only
    assert second.breaker_snapshot().state is BreakerState.OPEN


def test_only_one_probe_goes_through(breaker_settings: SandboxControl) -> None:
    open_breaker(breaker_settings)
    breaker_settings.set_faults(fail_next=[], latency_ms=400)
    wait_for_half_open()
    results: list[object] = []
    prober = threading.Thread(target=lambda: results.append(another_client().list_clusters()))
    prober.start()
    deadline = time.monotonic() + 5
    while novita_cache().get(PROBE_KEY) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(CircuitOpen, match="probe is in flight"):
        another_client().list_instances()
    prober.join()
    assert len(results[0]) == 5  # type: ignore[arg-type]
    assert api_calls(breaker_settings, "/gpu/instances") == []
    assert another_client().breaker_snapshot().state is BreakerState.CLOSED


def test_answers_that_are_not_failures_do_not_open_it(
    breaker_settings: SandboxControl,
) -> None:
    client = another_client()
    for _ in range(4):
        with pytest.raises(NotFound):
            client.get_instance("00000000deadbeef")
    breaker_settings.set_faults(capacity_errors={"us-tx-2": 4})
    for _ in range(4):
        with pytest.raises(CapacityUnavailable):
            client.create_instance(create_request())
    assert client.breaker_snapshot().state is BreakerState.CLOSED
    assert client.breaker_snapshot().consecutive_failures == 0


def test_a_success_resets_the_count(breaker_settings: SandboxControl, fast: Any) -> None:
    fast.NOVITA_MAX_RETRIES = 0
    client = another_client()
    for _ in range(2):
        fail_clusters(breaker_settings, count=2)
        for _ in range(2):
            with pytest.raises(Unavailable):
                client.list_clusters()
        assert client.breaker_snapshot().consecutive_failures == 2
        client.list_clusters()
        assert client.breaker_snapshot().consecutive_failures == 0
    assert client.breaker_snapshot().state is BreakerState.CLOSED


def test_its_state_is_a_metric(breaker_settings: SandboxControl) -> None:
    def exposition() -> str:
        return generate_latest(build_registry()).decode()

    assert 'novita_circuit_breaker_state{state="closed"} 1.0' in exposition()
    open_breaker(breaker_settings)
    text = exposition()
    assert 'novita_circuit_breaker_state{state="open"} 1.0' in text
    assert 'novita_circuit_breaker_state{state="closed"} 0.0' in text
    assert "novita_circuit_breaker_consecutive_failures 3.0" in text
    wait_for_half_open()
    assert 'novita_circuit_breaker_state{state="half_open"} 1.0' in exposition()
