"""HTTP answers -> NovitaErrors (errors.py), without the network."""

from __future__ import annotations

from typing import Any

import pytest

from novitai.novita.errors import (
    AuthFailed,
    CapacityUnavailable,
    InvalidStateChange,
    MalformedResponse,
    NotFound,
    NovitaError,
    QuotaExceeded,
    RateLimited,
    RejectedInput,
    Unavailable,
)
from novitai.novita.responses import error_for_status


def envelope(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"code": code, "reason": reason, "message": message, "metadata": {}}


def classify(status: int, payload: object, retry_after: float = 0.0) -> NovitaError:
    return error_for_status(
        status,
        payload,
        endpoint="/gpu/instance",
        retry_after=retry_after,
        scrub=lambda text: text.replace("TOPSECRET", "[redacted]"),
    )


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (400, envelope(400, "CONFLICT", "invalid state change"), InvalidStateChange),
        (400, {"message": "invalid state change"}, InvalidStateChange),
        (400, envelope(400, "CONFLICT", "container conflict"), InvalidStateChange),
        (400, envelope(400, "INSUFFICIENT_RESOURCE", "insufficient resource"), CapacityUnavailable),
        (400, envelope(400, "MIGRATE_INSUFFICIENT_RESOURCE", ""), CapacityUnavailable),
        (400, envelope(400, "CLUSTER_STATUS", "cluster abnormal"), CapacityUnavailable),
        (400, envelope(400, "NODE_STATUS", "node abnormal"), CapacityUnavailable),
        (400, {"message": "Insufficient resource"}, CapacityUnavailable),
        (400, envelope(400, "CREATE_INSTANCE_LIMIT", "limit"), QuotaExceeded),
        (400, envelope(400, "BALANCE_NOT_ENOUGH", "balance"), QuotaExceeded),
        (400, envelope(400, "EXPIRED_OR_BALANCE_NOT_ENOUGH", "balance"), QuotaExceeded),
        (400, envelope(400, "OPERATION_LIMIT", "too many operations"), QuotaExceeded),
        (403, envelope(403, "NOT_ENOUGH_BALANCE", "not enough balance"), QuotaExceeded),
        (400, envelope(400, "VALIDATOR_PARAM", "gpuNum must be in [1, 8]"), RejectedInput),
        (400, envelope(400, "IMAGE_NOT_FOUND", "image not found"), RejectedInput),
        (422, None, RejectedInput),
        (401, envelope(401, "UNAUTHORIZED", "unauthorized"), AuthFailed),
        (403, envelope(403, "FORBIDDEN", "no permission"), AuthFailed),
        (401, None, AuthFailed),
        (429, envelope(429, "RATE_LIMIT_EXCEEDED", "too many requests"), RateLimited),
        (500, envelope(500, "UNKNOWN", "unknown"), Unavailable),
        (502, "<html>bad gateway</html>", Unavailable),
        (503, None, Unavailable),
        (504, None, Unavailable),
        (408, None, Unavailable),
        (404, envelope(404, "RESOURCE_NOT_FOUND", "instance not found"), NotFound),
        (404, envelope(404, "RESOURCE_NOT_FOUND", "instance not fount"), NotFound),
        (400, envelope(400, "RESOURCE_NOT_FOUND", "instance not found"), NotFound),
        (400, envelope(400, "RESOURCE_NOT_FOUND", "instance not fount"), NotFound),
        (400, {"message": "instance not fount"}, NotFound),
        (400, {"message": "Instance Not Found"}, NotFound),
        (404, {"message": "instance not found"}, NotFound),
        (400, envelope(400, "TEMPLATE_NOT_FOUND", "template not found"), NotFound),
        # A 404 that does not say what is missing is a wrong URL, not a gone instance.
        (404, "<html><body>404 page not here</body></html>", MalformedResponse),
        (404, None, MalformedResponse),
        (404, envelope(404, "NOT_FOUND", "no route GET /gpu/instancez"), MalformedResponse),
        (302, None, MalformedResponse),
    ],
)
def test_status_and_body_decide_the_error(
    status: int, payload: object, expected: type[NovitaError]
) -> None:
    error = classify(status, payload)
    assert type(error) is expected
    assert error.status == status
    assert error.endpoint == "/gpu/instance"


def test_the_error_keeps_reason_and_message() -> None:
    error = classify(400, envelope(400, "insufficient_resource", "no 4090 left in us-tx-2"))
    assert error.reason == "INSUFFICIENT_RESOURCE"
    assert str(error) == (
        "Novita has no capacity: no 4090 left in us-tx-2 reason=INSUFFICIENT_RESOURCE "
        "status=400 endpoint=/gpu/instance"
    )


def test_rate_limited_carries_retry_after() -> None:
    error = classify(429, None, retry_after=2.5)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 2.5
    assert error.retryable


def test_messages_are_scrubbed_and_bounded() -> None:
    error = classify(400, {"message": "bad imageAuth TOPSECRET " + "x" * 1000})
    assert "TOPSECRET" not in str(error)
    assert "[redacted]" in error.message
    assert len(error.message) < 400
