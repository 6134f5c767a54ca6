"""Request id on every request and response; the error envelope for non-DRF answers under /api/."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Callable

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from novitai.errors import (
    debug_details,
    error_response,
    too_large_body,
    unavailable_dependency,
    unavailable_logged,
    unavailable_response,
)
from novitai.logging import set_request_id

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")

_STATUS_CODES = {
    400: ("bad_request", "The request is not valid."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("request_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    503: ("service_unavailable", "The service is unavailable right now; try again shortly."),
}


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


class RequestIdMiddleware:
    """Accepts a well-formed X-Request-ID (else makes one) and echoes it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            set_request_id(None)
        response[REQUEST_ID_HEADER] = request_id
        return response


class ApiErrorEnvelopeMiddleware:
    """Under /api/, any error answer that is not already the envelope (Django's HTML 404,
    CSRF 403, 500 page) is replaced by it; unhandled exceptions become a 500 envelope."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not is_api_path(request.path) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        code, message = _STATUS_CODES.get(
            response.status_code,
            ("internal_error", "An unexpected error occurred.")
            if response.status_code >= 500
            else ("error", "The request failed."),
        )
        replacement = error_response(response.status_code, code, message)
        for header in ("Retry-After", "Allow", "WWW-Authenticate"):
            if header in response:
                replacement[header] = response[header]
        return replacement

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        dependency = unavailable_dependency(exception)
        if dependency is not None:
            return unavailable(request, dependency, exception)
        if not is_api_path(request.path):
            return None
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(too_large_body(), status=413)
        logger.exception("unhandled error under /api/")
        details = debug_details(request, exception)
        return error_response(500, "internal_error", "An unexpected error occurred.", details)


def unavailable(request: HttpRequest, dependency: str, exception: BaseException) -> HttpResponse:
    """503 for an unreachable dependency: the envelope under /api/, plain text elsewhere."""
    if is_api_path(request.path):
        return unavailable_response(dependency, exception)
    response = HttpResponse(
        f"Service unavailable: the {dependency} cannot be reached right now; try again shortly.\n",
        status=503,
        content_type="text/plain; charset=utf-8",
    )
    unavailable_logged(response, dependency, exception)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: what no view caught (a middleware's database read, say). An unreachable
    dependency is a 503 there too; anything else is Django's 500 (the envelope under /api/)."""
    from django.views.defaults import server_error as django_server_error

    exception = sys.exc_info()[1]
    dependency = unavailable_dependency(exception) if exception is not None else None
    if exception is not None and dependency is not None:
        return unavailable(request, dependency, exception)
    return django_server_error(request)
