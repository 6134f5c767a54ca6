"""One error hierarchy that tells the caller what it may do.

    NovitaError
    ├── NotFound              the instance (or template…) does not exist: it is gone
    ├── InvalidStateChange    the action does not fit the current status: re-read the status
    ├── CapacityUnavailable   no capacity for this offer: try another offer
    ├── RejectedInput         Novita refused the request as invalid: do not retry
    │   ├── QuotaExceeded     account limits or balance: do not retry, tell a human
    │   ├── InUse             still used (a mounted volume, a registry auth in use): detach first
    │   └── MalformedResponse an answer of the wrong shape (API drift, wrong base URL): tell a human
    ├── AuthFailed            the API key is wrong or lacks permission: do not retry
    ├── RateLimited           slow down: retry after `retry_after` seconds
    ├── Unavailable           5xx, connection error, read timeout: retry later
    │   ├── CircuitOpen       the breaker is open: no call was made; retry after it closes
    │   ├── ConnectFailed     no connection could be made: nothing was sent (safe even for a create)
    │   └── GarbledResponse   a 2xx whose body is not JSON (a proxy page, a cut-off body)
    └── UnknownOutcome        a create was sent and its answer lost: look it up by name first

Messages never carry the API key or registry passwords.
"""

from __future__ import annotations


class NovitaError(Exception):
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str = "",
        endpoint: str = "",
    ) -> None:
        self.message = message
        self.status = status
        self.reason = reason
        self.endpoint = endpoint
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.reason:
            parts.append(f"reason={self.reason}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.endpoint:
            parts.append(f"endpoint={self.endpoint}")
        return " ".join(parts)


class NotFound(NovitaError):
    pass


class InvalidStateChange(NovitaError):
    pass


class CapacityUnavailable(NovitaError):
    pass


class RejectedInput(NovitaError):
    pass


class QuotaExceeded(RejectedInput):
    pass


class InUse(RejectedInput):
    """The thing is still used by another (NETWORK_STORAGE_IN_USE, IMAGE_AUTH_IN_USE, …)."""


class MalformedResponse(RejectedInput):
    """Novita answered, but not in the shape of its API: retrying cannot help.

    The message names the field and the expected type, never the value (it may be a secret).
    """


class AuthFailed(NovitaError):
    pass


class RateLimited(NovitaError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Unavailable(NovitaError):
    retryable = True


class ConnectFailed(Unavailable):
    """The connection could not be made (refused, DNS, connect timeout): nothing was sent."""


class GarbledResponse(Unavailable):
    """A 2xx answer that is not JSON: something between us and Novita is unwell."""


class CircuitOpen(Unavailable):
    def __init__(
        self,
        message: str = "Novita circuit breaker is open",
        *,
        retry_after: float = 0.0,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class UnknownOutcome(NovitaError):
    """A create reached Novita (or may have) and its answer was lost."""
