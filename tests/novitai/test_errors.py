"""One error envelope for every 4xx and 5xx under /api/, and the request id."""

from __future__ import annotations

import io
import logging

import pytest
from rest_framework.test import APIClient

from novitai.logging import ContextFilter, JsonFormatter, RedactingFilter
from tests.novitai.test_auth import assert_envelope

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.novitai.urls_for_tests")]


@pytest.mark.parametrize(
    "path", ["/api/nothing-here", "/api/v1/nothing-here/", "/api/v2/instances/"]
)
def test_unknown_api_path_is_404_in_the_envelope(api_client: APIClient, path: str) -> None:
    error = assert_envelope(api_client.get(path), 404, "not_found")
    assert path in error["message"]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here/",
        # a delivery id that is not a UUID does not match the route: the catch-all answers
        "/api/v1/webhooks/deliveries/not-a-uuid/redeliver/",
    ],
)
def test_unsafe_method_on_unknown_api_path_is_404_not_a_csrf_403(
    api_key: str, method: str, path: str
) -> None:
    # Was a 403 permission_denied (Django's CSRF check on the catch-all view), with or without
    # a key: misleading, and not the 404 a GET gets.
    anonymous = APIClient(enforce_csrf_checks=True)
    keyed = APIClient(enforce_csrf_checks=True)
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    for client in (anonymous, keyed):
        error = assert_envelope(getattr(client, method)(path), 404, "not_found")
        assert path in error["message"]


def test_unknown_api_path_is_404_even_without_a_key() -> None:
    assert_envelope(APIClient().get("/api/v1/nothing/"), 404, "not_found")


def test_malformed_json_is_400(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/v1/_test/echo/", data='{"name": "x",', content_type="application/json"
    )
    assert_envelope(response, 400, "malformed_request")


def test_malformed_json_on_a_real_endpoint_is_400_and_creates_nothing(
    api_client: APIClient,
) -> None:
    from instances.models import Instance

    response = api_client.post(
        "/api/v1/instances/", data='{"name": "x", "gpu_num": ', content_type="application/json"
    )
    error = assert_envelope(response, 400, "malformed_request")
    assert "JSON" in error["message"]
    assert Instance.objects.count() == 0


def test_json_nested_too_deeply_is_400_and_creates_nothing(api_client: APIClient) -> None:
    # json raises RecursionError (not ValueError) on this: it was a 500.
    from instances.models import Instance

    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/v1/_test/echo/", "/api/v1/instances/"):
        response = api_client.post(path, data=deep, content_type="application/json")
        error = assert_envelope(response, 400, "malformed_request")
        assert "nested too deeply" in error["message"]
    assert Instance.objects.count() == 0


def test_well_formed_json_passes(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/_test/echo/", {"name": "x"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"received": {"name": "x"}}


def test_unsupported_media_type_is_415(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/_test/echo/", data="name=x", content_type="text/plain")
    assert_envelope(response, 415, "unsupported_media_type")


def test_method_not_allowed_is_405(api_client: APIClient) -> None:
    response = api_client.delete("/api/v1/")
    assert_envelope(response, 405, "method_not_allowed")


def test_unhandled_error_is_500_without_details(api_client: APIClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("novitai.errors")
    logger.addHandler(handler)
    try:
        response = api_client.get("/api/v1/_test/boom/")
    finally:
        logger.removeHandler(handler)
    error = assert_envelope(response, 500, "internal_error")
    assert error["details"] == {}
    assert "kaboom" not in response.content.decode()
    # Logged with its traceback and request id, and the key-shaped secret in it redacted.
    logged = stream.getvalue()
    assert response["X-Request-ID"] in logged
    assert "unhandled error" in logged
    assert "RuntimeError: kaboom" in logged
    assert "abcdefghijklmnopqrstuvwxyz012345" not in logged


def test_unhandled_error_shows_details_when_debug(api_client: APIClient, settings) -> None:
    settings.DEBUG = True
    error = assert_envelope(api_client.get("/api/v1/_test/boom/"), 500, "internal_error")
    assert "RuntimeError" in error["details"]["exception"]


def test_unhandled_error_hides_details_from_a_remote_client_even_when_debug(
    api_key: str, settings
) -> None:
    settings.DEBUG = True
    client = APIClient(REMOTE_ADDR="203.0.113.9")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    error = assert_envelope(client.get("/api/v1/_test/boom/"), 500, "internal_error")
    assert error["details"] == {}


def test_request_id_is_echoed_when_valid(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/", HTTP_X_REQUEST_ID="req-123.abc:42")
    assert response["X-Request-ID"] == "req-123.abc:42"


@pytest.mark.parametrize(
    "bad", ["", "x" * 129, "has space", "semi;colon", "-leading-dash", "<script>"]
)
def test_invalid_request_id_is_replaced(api_client: APIClient, bad: str) -> None:
    response = api_client.get("/api/v1/", HTTP_X_REQUEST_ID=bad)
    generated = response["X-Request-ID"]
    assert generated != bad
    assert len(generated) == 32
    assert int(generated, 16) >= 0


def test_request_id_is_in_error_bodies_and_generated_when_absent() -> None:
    response = APIClient().get("/api/v1/")
    assert response.json()["error"]["request_id"] == response["X-Request-ID"]


def test_request_id_is_on_non_api_responses_too(client) -> None:
    response = client.get("/health/live", HTTP_X_REQUEST_ID="probe-1")
    assert response["X-Request-ID"] == "probe-1"


def test_html_404_outside_the_api_is_left_alone(client) -> None:
    response = client.get("/not-an-api-path/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# --- a body over the upload limit ------------------------------------------------------------


def test_a_create_over_the_upload_limit_is_413_in_the_envelope(
    api_client: APIClient, settings, caplog
) -> None:
    """Was a 500 (RequestDataTooBig), its text shown on the debug page."""
    from instances.models import Instance
    from jobs.models import Job

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"name": "web-1", "template_id": "212", "product_name": "' + "x" * 1000 + '"}'
    with caplog.at_level(logging.WARNING):
        response = api_client.post("/api/v1/instances/", body, content_type="application/json")
    error = assert_envelope(response, 413, "request_too_large")
    assert error["message"] == "The request body is larger than 1000 bytes."
    assert error["details"] == {"max_bytes": 1000}
    assert (Instance.objects.count(), Job.objects.count()) == (0, 0)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("path", ["/api/v1/_test/echo/", "/api/v1/_test/plain-body/"])
def test_any_api_body_over_the_upload_limit_is_413(api_client: APIClient, settings, path) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = api_client.post(path, '{"a": "' + "b" * 200 + '"}', content_type="application/json")
    assert assert_envelope(response, 413, "request_too_large")["details"] == {"max_bytes": 100}
    small = api_client.post(path, '{"a": "b"}', content_type="application/json")
    assert small.status_code == 200
