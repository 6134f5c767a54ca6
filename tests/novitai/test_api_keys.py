"""API key verification: constant-time against guessing, revoked and expired keys refused at the
lookup, expiry (`expires_at`) and `last_used_at` (written at most once per interval)."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

import tenants.keys
from tenants.models import Tenant, TenantAPIKey
from tenants.services import tenant_api_key_create
from tests.novitai.test_auth import assert_envelope

pytestmark = pytest.mark.django_db

API_ROOT = "/api/v1/"
HASH_LENGTH = len("sha512$$") + 128


def get(key: str) -> tuple[Any, list[str]]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(API_ROOT)
    return response, [q["sql"].split()[0] for q in queries.captured_queries]


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The lengths of what each hmac.compare_digest of the verification compared."""
    seen: list[tuple[int, int]] = []
    real = tenants.keys.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(tenants.keys, "compare_digest", spy)
    return seen


def row(key: str) -> Any:
    return TenantAPIKey.objects.filter(prefix=key.split(".")[0])


@pytest.mark.parametrize(
    "case", ["wrong-secret", "unknown-prefix", "revoked", "expired", "inactive"]
)
def test_every_failure_costs_one_query_and_one_constant_time_comparison(
    case: str, api_key: str, tenant: Tenant, comparisons: list[tuple[int, int]]
) -> None:
    prefix, secret = api_key.split(".")
    key = {
        "wrong-secret": f"{prefix}.{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",
        "unknown-prefix": f"Zz9Zz9Zz.{secret}",
    }.get(case, api_key)
    if case == "revoked":
        row(api_key).update(revoked=True)
    elif case == "expired":
        row(api_key).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "inactive":
        Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    before = list(row(api_key).values_list("last_used_at", "revoked"))

    response, queries = get(key)
    error = assert_envelope(response, 401, "authentication_failed")
    assert error["message"] == "Invalid, revoked or expired API key."
    assert queries == ["SELECT"]  # the lookup: no hash upgrade, no last_used_at, nothing else
    assert comparisons == [(HASH_LENGTH, HASH_LENGTH)]  # SHA-512 against SHA-512, in full
    assert list(row(api_key).values_list("last_used_at", "revoked")) == before


@pytest.mark.parametrize(
    "key", ["short.abc", "a" * 41, "abcdefgh." + "x" * 33, "abcdefgh_" + "x" * 32]
)
def test_a_malformed_key_is_refused_before_any_query(
    key: str, comparisons: list[tuple[int, int]]
) -> None:
    response, queries = get(key)
    assert_envelope(response, 401, "authentication_failed")
    assert (queries, comparisons) == ([], [])


def test_a_correct_key_is_compared_the_same_way(
    api_key: str, comparisons: list[tuple[int, int]]
) -> None:
    assert get(api_key)[0].status_code == 200
    assert comparisons == [(HASH_LENGTH, HASH_LENGTH)]


def test_expires_at_is_honoured(tenant: Tenant) -> None:
    soon = tenant_api_key_create(tenant=tenant, expires_at=timezone.now() + timedelta(hours=1))
    assert get(soon)[0].status_code == 200
    row(soon).update(expires_at=timezone.now())
    assert_envelope(get(soon)[0], 401, "authentication_failed")


def test_tenant_key_command_sets_an_expiry(tenant: Tenant) -> None:
    out = io.StringIO()
    call_command("tenant_key", "acme", "--expires-in-days", "30", stdout=out)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    key = row(lines["api_key"]).get()
    assert key.expires_at is not None
    assert key.expires_at.isoformat() == lines["expires_at"]
    assert timedelta(days=29, hours=23) < key.expires_at - timezone.now() <= timedelta(days=30)


def test_last_used_at_is_written_at_most_once_per_interval(api_key: str, settings: Any) -> None:
    settings.API_KEY_LAST_USED_INTERVAL_SECONDS = 300
    assert row(api_key).get().last_used_at is None
    # The first request writes it (a conditional UPDATE); those after it within the interval
    # cost what a request cost before last_used_at existed: the lookup alone.
    assert [get(api_key)[1] for _ in range(3)] == [["SELECT", "UPDATE"], ["SELECT"], ["SELECT"]]
    first = row(api_key).get().last_used_at
    assert first is not None
    assert timezone.now() - first < timedelta(seconds=60)
    row(api_key).update(last_used_at=first - timedelta(seconds=301))
    assert get(api_key)[1] == ["SELECT", "UPDATE"]
    assert row(api_key).get().last_used_at > first


def test_the_update_is_conditional(api_key: str, settings: Any) -> None:
    """Two requests that both read a stale value: the second UPDATE matches no row."""
    settings.API_KEY_LAST_USED_INTERVAL_SECONDS = 300
    with CaptureQueriesContext(connection) as queries:
        tenants.keys.tenant_api_key_authenticate(key=api_key)
    update = next(q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE"))
    assert '"last_used_at" IS NULL OR' in update
    assert '"last_used_at" <=' in update


def test_the_admin_shows_expiry_and_last_use(api_key: str, django_user_model: Any) -> None:
    get(api_key)
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client = APIClient()
    client.force_login(admin)
    listing = client.get("/admin/tenants/tenantapikey/").content.decode()
    assert "column-expires_at" in listing
    assert "column-last_used_at" in listing
    key = row(api_key).get()
    page = client.get(f"/admin/tenants/tenantapikey/{key.pk}/change/").content.decode()
    assert 'name="expires_at_0"' in page  # editable
    assert "Last used at" in page  # shown, read-only
    assert 'name="last_used_at' not in page
