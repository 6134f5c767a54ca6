from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from novitai import health, views
from novitai.errors import error_response
from novitai.metrics import metrics_view
from overview.views import dashboard_fragment

# An unreachable database is a 503 wherever it is met, even outside a view (novitai/middleware.py).
handler500 = "novitai.middleware.server_error"

admin.site.site_header = "novitai console"
admin.site.site_title = "novitai"
admin.site.index_title = "GPU instances on Novita.ai"


@csrf_exempt  # no endpoint, nothing to protect: a POST here is a 404, not a CSRF 403
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return error_response(404, "not_found", f"No API endpoint at {request.path}.")


api_v1: list[URLPattern | URLResolver] = [
    path("", views.api_root, name="api-root"),
    path("", include("overview.api.urls")),
    path("", include("billing.api.urls")),
    path("", include("catalog.api.urls")),
    path("", include("instances.api.urls")),
    path("", include("jobs.api.urls")),
    path("", include("storage.api.urls")),
    path("", include("tenants.api.urls")),
    path("", include("webhooks.api.urls")),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
    # The console's dashboard alone, for the index's refresh (staff only, like every admin page).
    path(
        "admin/overview/dashboard/",
        admin.site.admin_view(dashboard_fragment),
        name="overview-dashboard",
    ),
    path("admin/", admin.site.urls),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics_view, name="prometheus-metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The docs load nothing from another host (drf-spectacular-sidecar's files), and their
    # Content-Security-Policy makes the browser refuse anything else (ReDoc's own attribution
    # logo is an image on its CDN). Swagger UI's script is a file of its own (the split view).
    path(
        "api/docs/",
        views.same_origin_only(SpectacularSwaggerSplitView.as_view(url_name="schema")),
        name="swagger-ui",
    ),
    path("api/redoc/dist/bundles/redoc.standalone.js", views.redoc_bundle, name="redoc-bundle"),
    path(
        "api/redoc/",
        views.same_origin_only(
            SpectacularRedocView.as_view(url_name="schema", template_name="novitai/redoc.html")
        ),
        name="redoc",
    ),
    path("api/v1/", include(api_v1)),
    re_path(r"^api/", api_not_found),
]
