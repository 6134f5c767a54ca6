"""Errors, retries, Retry-After and unknown-outcome creates, against the sandbox over HTTP."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.config import NovitaConfig
from novitai.novita.errors import (
    AuthFailed,
    CapacityUnavailable,
    ConnectFailed,
    InvalidStateChange,
    QuotaExceeded,
    RateLimited,
    RejectedInput,
    Unavailable,
    UnknownOutcome,
)
from tests.novita.conftest import another_client, api_calls, create_request, sample


class RecordingSleep:
    """Sleeps for real, and remembers how long it was asked to."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(seconds)


def statuses(sandbox: SandboxControl, path: str) -> list[int]:
    return [call["status"] for call in api_calls(sandbox, path)]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_read_is_retried_on_5xx_with_capped_jittered_backoff(
    novita_settings: SandboxControl, fast: Any
) -> None:
    fast.NOVITA_BACKOFF_BASE = 0.02
    fast.NOVITA_BACKOFF_CAP = 0.05
    novita_settings.set_faults(fail_next=[{"path": "/clusters", "status": 503, "count": 3}])
    sleep = RecordingSleep()
    client = NovitaClient(NovitaConfig.from_settings(), sleep=sleep)
    retries = sample("novita_retries_total", {"endpoint": "/clusters"})

    assert len(client.list_clusters()) == 5

    assert statuses(novita_settings, "/clusters") == [503, 503, 503, 200]
    assert sample("novita_retries_total", {"endpoint": "/clusters"}) - retries == 3
    ceilings = [0.02, 0.04, 0.05]  # base * 2**n, capped
    assert len(sleep.delays) == 3
    assert all(0 <= d < c for d, c in zip(sleep.delays, ceilings, strict=True))


def test_retries_run_out(client: NovitaClient, sandbox: SandboxControl) -> None:
    sandbox.set_faults(fail_next=[{"path": "/gpu/instances", "status": 502, "count": -1}])
    with pytest.raises(Unavailable) as caught:
        client.list_instances()
    assert type(caught.value) is Unavailable
    assert (caught.value.status, caught.value.endpoint) == (502, "/gpu/instances")
    assert statuses(sandbox, "/gpu/instances") == [502] * 4  # 1 + NOVITA_MAX_RETRIES


def test_a_dropped_connection_on_a_read_is_retried(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(fail_next=[{"path": "/gpu/instances", "drop": True, "count": 1}])
    assert client.list_instances() == []
    assert statuses(sandbox, "/gpu/instances") == [0, 200]  # 0: closed unanswered


def test_a_read_timeout_is_unavailable_and_retried(
    novita_settings: SandboxControl, fast: Any
) -> None:
    fast.NOVITA_READ_TIMEOUT = 0.2
    fast.NOVITA_MAX_RETRIES = 1
    novita_settings.set_faults(latency_ms=500)
    with pytest.raises(Unavailable) as caught:
        get_client().list_clusters()
    assert type(caught.value) is Unavailable
    assert str(caught.value) == (
        "Novita did not answer within 0.2s (ReadTimeout) endpoint=/clusters"
    )
    # The sandbox logs a call once it has answered it, after its latency.
    deadline = time.monotonic() + 5
    while len(api_calls(novita_settings, "/clusters")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(api_calls(novita_settings, "/clusters")) == 2


def test_a_repeat_safe_mutation_is_retried(client: NovitaClient, sandbox: SandboxControl) -> None:
    instance_id = client.create_instance(create_request())
    sandbox.wait_for(instance_id, "running")
    sandbox.set_faults(
        fail_next=[{"path": "/gpu/instance/stop", "status": 500, "count": 1, "after_effect": True}]
    )
    # The first stop took effect and its answer was a 500; the repeat says "invalid state change",
    # which callers read as "re-read the status".
    with pytest.raises(InvalidStateChange):
        client.stop_instance(instance_id)
    assert statuses(sandbox, "/gpu/instance/stop") == [500, 400]
    assert client.get_instance(instance_id).status in {"toStop", "stopping", "exited"}


def test_a_create_is_not_retried_on_5xx(client: NovitaClient, sandbox: SandboxControl) -> None:
    sandbox.set_faults(fail_next=[{"path": "/gpu/instance/create", "status": 503, "count": 1}])
    with pytest.raises(UnknownOutcome) as caught:
        client.create_instance(create_request("novitai-5xx"))
    assert caught.value.status == 503
    assert isinstance(caught.value.__cause__, Unavailable)
    assert statuses(sandbox, "/gpu/instance/create") == [503]
    assert sandbox.stats()["creates_by_name"] == {}


def test_a_create_that_happened_behind_a_5xx_is_found_by_name(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(
        fail_next=[
            {"path": "/gpu/instance/create", "status": 502, "count": 1, "after_effect": True}
        ]
    )
    with pytest.raises(UnknownOutcome):
        client.create_instance(create_request("novitai-behind-5xx"))
    assert statuses(sandbox, "/gpu/instance/create") == [502]
    (found,) = client.find_instances_by_name("novitai-behind-5xx")
    assert [found.id] == [i["id"] for i in sandbox.instances()]


def test_a_create_whose_connection_closes_is_unknown_outcome(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(lose_create_answers=1, lose_create_mode="close")
    unknown = sample(
        "novita_requests_total",
        {"endpoint": "/gpu/instance/create", "method": "POST", "outcome": "unknown_outcome"},
    )
    with pytest.raises(UnknownOutcome):
        client.create_instance(create_request("novitai-lost-close"))
    assert statuses(sandbox, "/gpu/instance/create") == [0]
    assert sandbox.stats()["creates_by_name"] == {"novitai-lost-close": 1}
    (found,) = client.find_instances_by_name("novitai-lost-close")
    assert found.id == sandbox.instances()[0]["id"]
    after = sample(
        "novita_requests_total",
        {"endpoint": "/gpu/instance/create", "method": "POST", "outcome": "unknown_outcome"},
    )
    assert after - unknown == 1


def test_a_create_whose_answer_is_late_is_unknown_outcome(
    novita_settings: SandboxControl, fast: Any
) -> None:
    fast.NOVITA_CREATE_TIMEOUT = 0.3
    novita_settings.set_faults(
        lose_create_answers=1, lose_create_mode="delay", lose_create_delay_s=1.0
    )
    with pytest.raises(UnknownOutcome) as caught:
        get_client().create_instance(create_request("novitai-lost-delay"))
    assert "did not answer within 0.3s" in str(caught.value)
    assert len(api_calls(novita_settings, "/gpu/instance/create")) == 1
    assert novita_settings.stats()["creates_by_name"] == {"novitai-lost-delay": 1}


def test_a_create_that_could_not_connect_is_retried_and_safe(settings: Any, fast: Any) -> None:
    settings.NOVITA_API_BASE_URL = f"http://127.0.0.1:{closed_port()}/gpu-instance/openapi/v1"
    settings.NOVITA_API_KEY = "k"
    retries = sample("novita_retries_total", {"endpoint": "/gpu/instance/create"})
    with pytest.raises(ConnectFailed) as caught:
        get_client().create_instance(create_request())
    assert not isinstance(caught.value, UnknownOutcome)  # nothing was sent: safe to try again
    assert sample("novita_retries_total", {"endpoint": "/gpu/instance/create"}) - retries == 3


def test_a_create_refused_with_429_is_retried_after_retry_after(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(
        fail_next=[{"path": "/gpu/instance/create", "status": 429, "count": 1, "retry_after": 1}]
    )
    instance_id = client.create_instance(create_request("novitai-after-429"))
    refused, created = api_calls(sandbox, "/gpu/instance/create")
    assert (refused["status"], created["status"]) == (429, 200)
    assert created["at"] - refused["at"] >= 1.0  # nothing sent before Retry-After ran out
    assert sandbox.stats()["creates_by_name"] == {"novitai-after-429": 1}
    assert [i["id"] for i in sandbox.instances()] == [instance_id]


def test_retry_after_holds_back_every_client(novita_settings: SandboxControl, fast: Any) -> None:
    fast.NOVITA_MAX_RETRIES = 0
    novita_settings.set_faults(
        fail_next=[{"path": "/clusters", "status": 429, "count": 1, "retry_after": 1}]
    )
    with pytest.raises(RateLimited) as caught:
        get_client().list_clusters()
    assert caught.value.retry_after == 1.0
    # Another process (client) waits out the same Retry-After before sending anything.
    another_client().list_products()
    (refused,) = api_calls(novita_settings, "/clusters")
    (later,) = api_calls(novita_settings, "/products")
    assert later["at"] - refused["at"] >= 1.0


def test_a_long_retry_after_is_raised_not_slept(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    sandbox.set_faults(
        fail_next=[{"path": "/clusters", "status": 429, "count": 1, "retry_after": 120}]
    )
    with pytest.raises(RateLimited) as caught:
        client.list_clusters()
    assert caught.value.retry_after == 120.0
    assert statuses(sandbox, "/clusters") == [429]


def test_wrong_key_is_auth_failed_and_not_retried(
    novita_settings: SandboxControl, fast: Any
) -> None:
    fast.NOVITA_API_KEY = "not-the-sandbox-key"
    with pytest.raises(AuthFailed) as caught:
        get_client().list_clusters()
    assert (caught.value.status, caught.value.reason) == (401, "UNAUTHORIZED")
    assert statuses(novita_settings, "/clusters") == [401]


def test_403_is_auth_failed(client: NovitaClient, sandbox: SandboxControl) -> None:
    sandbox.set_faults(
        fail_next=[{"path": "/gpu/instances", "status": 403, "reason": "FORBIDDEN", "count": 1}]
    )
    with pytest.raises(AuthFailed):
        client.list_instances()


def test_no_capacity_is_capacity_unavailable(client: NovitaClient, sandbox: SandboxControl) -> None:
    sandbox.set_faults(capacity_errors={"us-tx-2": 1})
    with pytest.raises(CapacityUnavailable) as caught:
        client.create_instance(create_request())
    assert (caught.value.status, caught.value.reason) == (400, "INSUFFICIENT_RESOURCE")
    assert statuses(sandbox, "/gpu/instance/create") == [400]
    assert client.create_instance(create_request())  # the next one fits


@pytest.mark.parametrize(
    "reason",
    [
        "CREATE_INSTANCE_LIMIT",
        "BALANCE_NOT_ENOUGH",
        "EXPIRED_OR_BALANCE_NOT_ENOUGH",
        "OPERATION_LIMIT",
    ],
)
def test_account_limits_are_quota_exceeded(
    client: NovitaClient, sandbox: SandboxControl, reason: str
) -> None:
    sandbox.set_faults(
        fail_next=[{"path": "/gpu/instance/create", "status": 400, "reason": reason, "count": 1}]
    )
    with pytest.raises(QuotaExceeded) as caught:
        client.create_instance(create_request())
    assert caught.value.reason == reason
    assert statuses(sandbox, "/gpu/instance/create") == [400]


def test_invalid_input_is_rejected_input(client: NovitaClient, sandbox: SandboxControl) -> None:
    with pytest.raises(RejectedInput) as caught:
        client.create_instance(create_request(gpu_num=9))
    assert type(caught.value) is RejectedInput
    assert caught.value.reason == "VALIDATOR_PARAM"
    assert statuses(sandbox, "/gpu/instance/create") == [400]


def test_every_call_is_counted_and_timed(client: NovitaClient, sandbox: SandboxControl) -> None:
    labels = {"endpoint": "/gpu/instance", "method": "GET"}
    ok = sample("novita_requests_total", {**labels, "outcome": "ok"})
    missing = sample("novita_requests_total", {**labels, "outcome": "not_found"})
    timed = sample("novita_request_duration_seconds_count", {"endpoint": "/gpu/instance"})
    instance_id = client.create_instance(create_request())
    client.get_instance(instance_id)
    with pytest.raises(Exception, match="not found"):
        client.get_instance("00000000deadbeef")
    assert sample("novita_requests_total", {**labels, "outcome": "ok"}) - ok == 1
    assert sample("novita_requests_total", {**labels, "outcome": "not_found"}) - missing == 1
    assert (
        sample("novita_request_duration_seconds_count", {"endpoint": "/gpu/instance"}) - timed == 2
    )
