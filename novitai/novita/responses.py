"""HTTP answers and transport failures -> values or NovitaErrors (errors.py says what each means).

Novita's error body is `{"code", "reason", "message", "metadata"}` (novita-api.md §1.3). The reason
decides where it has one; the message decides for the two cases seen live without one ("invalid
state change", and "not found" spelt "not fount"). Messages are passed through `scrub` before
they reach an exception: Novita may echo what it was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from novitai.novita.errors import (
    AuthFailed,
    CapacityUnavailable,
    ConnectFailed,
    GarbledResponse,
    InUse,
    InvalidStateChange,
    MalformedResponse,
    NotFound,
    NovitaError,
    QuotaExceeded,
    RateLimited,
    RejectedInput,
    Unavailable,
)

Scrub = Callable[[str], str]

CAPACITY_REASONS = frozenset(
    {"INSUFFICIENT_RESOURCE", "MIGRATE_INSUFFICIENT_RESOURCE", "CLUSTER_STATUS", "NODE_STATUS"}
)
QUOTA_REASONS = frozenset(
    {
        "CREATE_INSTANCE_LIMIT",
        "BALANCE_NOT_ENOUGH",
        "EXPIRED_OR_BALANCE_NOT_ENOUGH",
        "OPERATION_LIMIT",
        "NOT_ENOUGH_BALANCE",  # the gateway's 403 for an empty balance
    }
)
# The thing acted on is gone.
NOT_FOUND_REASONS = frozenset({"RESOURCE_NOT_FOUND", "TEMPLATE_NOT_FOUND", "JOB_NOT_FOUND"})
# Something the request refers to does not exist: the request is wrong, the target is not gone.
MISSING_REFERENCE_REASONS = frozenset(
    {"IMAGE_NOT_FOUND", "NETWORK_STORAGE_NOT_FOUND", "NETWORK_NOT_FOUND"}
)
IN_USE_REASONS = frozenset({"NETWORK_STORAGE_IN_USE", "IMAGE_AUTH_IN_USE", "NETWORK_IN_USE"})
NOT_FOUND_WORDS = ("not found", "not fount")  # the live API's typo (novita-api.md §1.3)
MAX_MESSAGE_CHARS = 300


def error_for_status(  # noqa: C901, PLR0911 - one return per error class
    status: int,
    payload: object,
    *,
    endpoint: str,
    retry_after: float,
    scrub: Scrub,
) -> NovitaError:
    """The error for a non-2xx answer. `retry_after` is Retry-After, or the default backoff."""
    envelope: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    reason = str(envelope.get("reason") or "").strip().upper()
    message = scrub(str(envelope.get("message") or ""))[:MAX_MESSAGE_CHARS]
    lowered = message.lower()
    detail = message or reason or "no error body"
    kwargs: dict[str, Any] = {"status": status, "reason": reason, "endpoint": endpoint}

    if status == 429:
        return RateLimited(f"Novita rate limit: {detail}", retry_after=retry_after, **kwargs)
    if status >= 500 or status == 408:
        return Unavailable(f"Novita answered HTTP {status}: {detail}", **kwargs)
    if reason in QUOTA_REASONS:
        return QuotaExceeded(f"Novita account limit: {detail}", **kwargs)
    if status in (401, 403):
        return AuthFailed(f"Novita refused the API key: {detail}", **kwargs)
    if not 400 <= status < 500:
        return MalformedResponse(f"Novita answered an unexpected HTTP {status}", **kwargs)
    if reason in MISSING_REFERENCE_REASONS:
        return RejectedInput(f"Novita rejected the request: {detail}", **kwargs)
    if reason in IN_USE_REASONS:
        return InUse(f"Novita: still in use: {detail}", **kwargs)
    if reason in NOT_FOUND_REASONS or any(word in lowered for word in NOT_FOUND_WORDS):
        return NotFound(f"Novita: {detail}", **kwargs)
    if status == 404:
        # A 404 that does not say "not found" (an HTML page, "no route") is a wrong URL, not a
        # missing instance: reading it as "gone" would forget a GPU that still bills.
        return MalformedResponse(
            f"Novita answered HTTP 404 without saying what is missing ({detail}): "
            "is NOVITA_API_BASE_URL right?",
            **kwargs,
        )
    if reason == "CONFLICT" or "invalid state change" in lowered:
        return InvalidStateChange(f"Novita: {detail}", **kwargs)
    if reason in CAPACITY_REASONS or "insufficient resource" in lowered:
        return CapacityUnavailable(f"Novita has no capacity: {detail}", **kwargs)
    return RejectedInput(f"Novita rejected the request: {detail}", **kwargs)


def read_json(response: requests.Response, *, endpoint: str) -> Any:
    """A 2xx answer's JSON (None for an empty body); GarbledResponse when it is not JSON."""
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:  # requests.JSONDecodeError, UnicodeDecodeError
        raise GarbledResponse(
            f"Novita answered HTTP {response.status_code} with a body that is not JSON "
            f"({response.headers.get('Content-Type', 'no content type')})",
            status=response.status_code,
            endpoint=endpoint,
        ) from None


def error_body(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def nothing_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never made, so the request never reached Novita.

    urllib3 raises connect errors (refused, DNS, connect timeout: NewConnectionError is a
    ConnectTimeoutError) before sending, wrapped in MaxRetryError; anything else (a reset, a
    close after sending, a read timeout) may come after the request was sent.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ProxyError | requests.exceptions.SSLError):
        return False
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    cause = exc.args[0]
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, ConnectTimeoutError)


def transport_error(
    exc: requests.RequestException, *, endpoint: str, timeout: tuple[float, float], scrub: Scrub
) -> NovitaError:
    name = type(exc).__name__
    if nothing_sent(exc):
        return ConnectFailed(
            f"could not connect to Novita ({name}, connect timeout {timeout[0]:g}s)",
            endpoint=endpoint,
        )
    if isinstance(exc, requests.Timeout):
        return Unavailable(
            f"Novita did not answer within {timeout[1]:g}s ({name})", endpoint=endpoint
        )
    if isinstance(
        exc,
        requests.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError,
    ):
        return Unavailable(
            f"the connection to Novita broke ({name}: {scrub(str(exc))[:MAX_MESSAGE_CHARS]})",
            endpoint=endpoint,
        )
    # InvalidURL, MissingSchema, InvalidHeader…: the request could not even be built. Their text
    # may quote a header value, i.e. the API key: only the class name is kept.
    return RejectedInput(f"the request to Novita could not be made ({name})", endpoint=endpoint)
