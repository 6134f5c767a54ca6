"""Django's debug pages for the developer at the keyboard only, and never a URL's password.

With DEBUG on, Django answers an error with a page listing the settings and the request's
environment — under runserver that is the whole process environment, `DATABASE_URL` included.
Django masks only names that look secret (KEY, SECRET, TOKEN, PASS, …), not a password inside
a URL. So:

- `LoopbackDebugPagesMiddleware` lets a debug page through only to a client on a loopback
  address whose Host header is allowed. A foreign Host from loopback is what a DNS-rebinding
  page in the developer's own browser sends, and that page could read the answer. Anyone else
  gets a plain error page with the same status.
- `ExceptionReporter` (settings.DEFAULT_EXCEPTION_REPORTER) masks the password of every URL in
  what it renders: debug pages and error reports alike, settings, request variables and local
  variables.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString, mark_safe
from django.views import debug

from novitai.logging import URL_PASSWORD

MASK = "********"


def mask_url_passwords(text: str) -> str:
    """'redis://:pw@host/0' → 'redis://:********@host/0'; anything else unchanged."""
    return URL_PASSWORD.sub(rf"\1{MASK}@", text)


def is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").strip()).is_loopback
    except ValueError:
        return False


def debug_page_allowed(request: HttpRequest) -> bool:
    """A client on loopback that names an allowed host."""
    if not is_loopback(request.META.get("REMOTE_ADDR")):
        return False
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True


def plain_error_page(status: int) -> HttpResponse:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return HttpResponse(
        f"<!doctype html><title>{status} {reason}</title><h1>{reason} ({status})</h1>\n",
        status=status,
        content_type="text/html; charset=utf-8",
    )


class LoopbackDebugPagesMiddleware:
    """With DEBUG on, an error answer that is not JSON (the API's envelope shows no debug page)
    reaches only `debug_page_allowed` clients; others get `plain_error_page`."""

    KEPT_HEADERS = ("Retry-After", "Allow", "WWW-Authenticate")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not settings.DEBUG or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        if debug_page_allowed(request):
            return response
        replacement = plain_error_page(response.status_code)
        for header in self.KEPT_HEADERS:
            if header in response:
                replacement[header] = response[header]
        return replacement


class ExceptionReporter(debug.ExceptionReporter):
    """Django's, with every URL's password masked in what it renders."""

    # Still safe HTML: a password's characters become '*', nothing else changes.
    def get_traceback_html(self) -> SafeString:
        return mark_safe(mask_url_passwords(super().get_traceback_html()))  # noqa: S308

    def get_traceback_text(self) -> SafeString:
        return mark_safe(mask_url_passwords(super().get_traceback_text()))  # noqa: S308
