"""Extra views mounted beside the real URLconf, for error-path tests through the whole stack."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from novitai.urls import urlpatterns as real_urlpatterns


class EchoView(APIView):
    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        return Response({"received": request.data})


class BoomView(APIView):
    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        raise RuntimeError("kaboom with Bearer abcdefgh.abcdefghijklmnopqrstuvwxyz012345")


def plain_boom(request: HttpRequest) -> HttpResponse:
    """A page (not the API) that fails with a URL's password in a local variable."""
    broker = "redis://:canary-local-pw@redis:6379/0"
    raise RuntimeError(f"cannot reach {broker}")


def plain_body(request: HttpRequest) -> HttpResponse:
    """A plain Django view under /api/ that reads the body."""
    return HttpResponse(str(len(request.body)))


# Mounted before the real patterns so that the /api/ catch-all does not hide them.
from django.urls import path  # noqa: E402

urlpatterns = [
    path("api/v1/_test/echo/", EchoView.as_view()),
    path("api/v1/_test/boom/", BoomView.as_view()),
    path("_test/boom/", plain_boom),
    path("api/v1/_test/plain-body/", plain_body),
    *real_urlpatterns,
]
