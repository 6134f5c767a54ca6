"""Shared fixtures. Each app's own fixtures live beside its tests; the shared ones are here.

Sections are owned by the piece of novitai they serve; add to your section only.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import caches
from rest_framework.test import APIClient

from tenants.models import Tenant
from tenants.services import tenant_create

# --- foundation: tenants, keys, API clients --------------------------------------------------


@pytest.fixture(autouse=True)
def _clear_caches() -> None:
    """Every test starts with empty novitai caches (breaker, throttles, catalog, …)."""
    for alias in settings.NOVITAI_CACHES:
        caches[alias].clear()


@pytest.fixture
def tenant_and_key(db: None) -> tuple[Tenant, str]:
    return tenant_create(name="acme")


@pytest.fixture
def tenant(tenant_and_key: tuple[Tenant, str]) -> Tenant:
    return tenant_and_key[0]


@pytest.fixture
def api_key(tenant_and_key: tuple[Tenant, str]) -> str:
    return tenant_and_key[1]


@pytest.fixture
def api_client(api_key: str) -> APIClient:
    """An API client authenticated with the `acme` tenant's key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def other_tenant_client(db: None) -> APIClient:
    """An API client of another tenant, `globex`."""
    _, key = tenant_create(name="globex")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def staff_client(db: None, django_user_model) -> APIClient:  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    client = APIClient()
    client.force_login(user)
    return client


def pytest_report_header(config) -> list[str]:  # type: ignore[no-untyped-def]
    """Say what the suite runs against (CI asserts Postgres and Redis)."""
    from novitai.celery import app

    return [
        f"novitai: database={settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} "
        f"cache={settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]} "
        f"broker={str(app.conf.broker_url).split(':', 1)[0]}"
    ]
