"""The dashboard alone (staff only, under /admin/): what the index's script fetches to refresh."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache

from overview.dashboard import dashboard


@never_cache
def dashboard_fragment(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "overview/dashboard.html", {"d": dashboard()})
