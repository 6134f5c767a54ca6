"""One error envelope for every 4xx and 5xx under /api/.

    {"error": {"code", "message", "details", "request_id", "timestamp"}}

Domain code raises `ServiceError` subclasses; DRF raises its own exceptions; Django produces
404s and 500s outside DRF. All of them end up here.

A dependency that cannot be reached — the database, or a cache or broker error that escaped
novitai/outages.py — is not a bug: it answers 503 `service_unavailable` with Retry-After
(SERVICE_UNAVAILABLE_RETRY_AFTER_SECONDS), logged once as a warning, never a 500.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponseBase, JsonResponse
from django_redis.exceptions import ConnectionInterrupted
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from novitai.logging import get_request_id

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error the domain reports to the caller: a code, a message, an HTTP status."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "bad_request"
    message: str = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Any = None,
        status_code: int | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.details = details
        if status_code is not None:
            self.status_code = status_code
        super().__init__(self.message)


class ValidationFailed(ServiceError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "validation_error"
    message = "The request is not valid."


class NotFound(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    message = "Not found."


class Conflict(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"
    message = "The request conflicts with the current state."


class Unprocessable(ServiceError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"
    message = "The request cannot be processed."


class UpstreamUnavailable(ServiceError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "upstream_unavailable"
    message = "Novita is not reachable right now; try again shortly."


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """A path id that is not a UUID names nothing: 404 `<what>_not_found`, never a 500."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"No such {what}.", code=f"{what}_not_found") from None


def error_body(
    code: str, message: str, details: Any = None, request_id: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details if details is not None else {},
            "request_id": request_id or get_request_id(),
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
    }


def error_response(status_code: int, code: str, message: str, details: Any = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status_code)


_DRF_CODES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}

_DRF_MESSAGES = {
    exceptions.ValidationError: "The request is not valid.",
}


_UNAVAILABLE_MESSAGES = {
    "database": "The database cannot be reached right now; try again shortly.",
    "cache": "The cache cannot be reached right now; try again shortly.",
    "broker": "The message broker cannot be reached right now; try again shortly.",
}


def unavailable_dependency(exc: BaseException) -> str | None:
    """ "database", "cache" or "broker" when `exc` says that one cannot be reached; else None."""
    if isinstance(exc, OperationalError | InterfaceError):
        return "database"
    if isinstance(exc, RedisError | ConnectionInterrupted):
        return "cache"
    if isinstance(exc, BrokerError):
        return "broker"
    return None


def unavailable_logged(response: HttpResponseBase, dependency: str, exc: BaseException) -> None:
    """The one log line of a 503 for an unreachable dependency (Django's own error line for a
    5xx, with its traceback, is not wanted: this is not a bug)."""
    logger.warning(
        "%s unavailable: answered 503 (%s: %s)",
        dependency,
        type(exc).__name__,
        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
        extra={"dependency": dependency},
    )
    response["Retry-After"] = str(settings.SERVICE_UNAVAILABLE_RETRY_AFTER_SECONDS)
    response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log


def unavailable_response(dependency: str, exc: BaseException) -> JsonResponse:
    response = error_response(503, "service_unavailable", _UNAVAILABLE_MESSAGES[dependency])
    unavailable_logged(response, dependency, exc)
    return response


def too_large_body() -> dict[str, Any]:
    """The envelope of a body over DATA_UPLOAD_MAX_MEMORY_SIZE (413): a client error, not a 500."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_body(
        "request_too_large",
        f"The request body is larger than {limit} bytes.",
        {"max_bytes": limit},
    )


def _drf_code(exc: exceptions.APIException) -> str:
    for cls in type(exc).__mro__:
        if cls in _DRF_CODES:
            return _DRF_CODES[cls]
    return str(exc.default_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception becomes the envelope."""
    headers: dict[str, str] = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    dependency = unavailable_dependency(exc)
    if dependency is not None:
        set_rollback()
        response = Response(
            error_body("service_unavailable", _UNAVAILABLE_MESSAGES[dependency]),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        unavailable_logged(response, dependency, exc)
        return response

    if isinstance(exc, ServiceError):
        set_rollback()
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=headers
        )

    if isinstance(exc, RequestDataTooBig):
        set_rollback()
        return Response(too_large_body(), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)

    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        set_rollback()
        if isinstance(exc, exceptions.ValidationError):
            details = (
                exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            )
            message = _DRF_MESSAGES[exceptions.ValidationError]
        else:
            details = {}
            message = str(exc.detail)
        return Response(
            error_body(_drf_code(exc), message, details),
            status=exc.status_code,
            headers=headers,
        )

    logger.exception("unhandled error in API view")
    set_rollback()
    return Response(
        error_body(
            "internal_error",
            "An unexpected error occurred.",
            debug_details(context.get("request"), exc),
        ),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def debug_details(request: Any, exc: BaseException) -> dict[str, str]:
    """What a 500 says of its exception: with DEBUG, to a client that may see debug pages
    (loopback, an allowed host: novitai/debug.py) and to no one else."""
    from novitai.debug import debug_page_allowed

    if not (settings.DEBUG and request is not None and debug_page_allowed(request)):
        return {}
    return {"exception": repr(exc)}
