"""API keys: Bearer auth, hashing, revocation, staff sessions — through real requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.models import Tenant, TenantAPIKey
from tenants.services import tenant_api_key_create

pytestmark = pytest.mark.django_db

API_ROOT = "/api/v1/"


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id", "timestamp"}
    assert error["code"] == code
    assert error["request_id"] == response["X-Request-ID"]
    assert error["message"]
    return error


def test_valid_key_is_accepted(api_client: APIClient) -> None:
    response = api_client.get(API_ROOT)
    assert response.status_code == 200
    links = response.json()["links"]
    assert links["instances"] == "http://testserver/api/v1/instances/"
    assert links["docs"] == "http://testserver/api/docs/"
    assert set(links) >= {"instances", "jobs", "products", "regions", "webhook_deliveries"}


def test_no_key_is_401_in_the_envelope() -> None:
    response = APIClient().get(API_ROOT)
    assert_envelope(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Bearer"


def test_wrong_key_is_401(api_key: str) -> None:
    prefix = api_key.split(".")[0]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {prefix}.{'x' * 32}")
    assert_envelope(client.get(API_ROOT), 401, "authentication_failed")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer a b", "Bearer not-a-key", "Bearer \u00e9t\u00e9"],
    ids=["missing-key", "two-words", "garbage", "non-ascii"],
)
def test_malformed_bearer_header_is_401(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_envelope(client.get(API_ROOT), 401, "authentication_failed")


def test_revoked_key_is_401(api_client: APIClient, api_key: str) -> None:
    key = TenantAPIKey.objects.get_from_key(api_key)
    key.revoked = True
    key.save()
    assert_envelope(api_client.get(API_ROOT), 401, "authentication_failed")


def test_expired_key_is_401(api_client: APIClient, api_key: str) -> None:
    TenantAPIKey.objects.filter(prefix=api_key.split(".")[0]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_envelope(api_client.get(API_ROOT), 401, "authentication_failed")


def test_key_of_a_deactivated_tenant_is_401(api_client: APIClient, tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    assert_envelope(api_client.get(API_ROOT), 401, "authentication_failed")


def test_keys_are_stored_hashed(tenant: Tenant) -> None:
    key = tenant_api_key_create(tenant=tenant, name="second")
    prefix, _, secret = key.partition(".")
    row = TenantAPIKey.objects.get(prefix=prefix)
    assert secret not in row.hashed_key
    assert secret not in row.id
    assert row.hashed_key.startswith("sha512$$")


def test_several_keys_per_tenant_each_work(tenant: Tenant) -> None:
    for name in ("ci", "laptop"):
        client = APIClient()
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {tenant_api_key_create(tenant=tenant, name=name)}"
        )
        assert client.get(API_ROOT).status_code == 200


def test_staff_session_is_accepted(staff_client: APIClient) -> None:
    assert staff_client.get(API_ROOT).status_code == 200


def test_non_staff_session_is_403(django_user_model) -> None:
    user = django_user_model.objects.create_user("someone", password="pw")
    client = APIClient()
    client.force_login(user)
    assert_envelope(client.get(API_ROOT), 403, "permission_denied")


def test_throttled_key_gets_429_with_retry_after(api_client: APIClient, settings) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "3/min"},
    }
    statuses = [api_client.get(API_ROOT).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api_client.get(API_ROOT)
    assert_envelope(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60


def test_throttling_is_per_key(tenant: Tenant, settings) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"},
    }
    first, second = APIClient(), APIClient()
    first.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_api_key_create(tenant=tenant)}")
    second.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_api_key_create(tenant=tenant)}")
    assert [first.get(API_ROOT).status_code for _ in range(3)] == [200, 200, 429]
    assert second.get(API_ROOT).status_code == 200
