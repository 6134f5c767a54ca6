"""Shared fixtures. Each app's own fixtures live beside its tests; the shared ones are here.

Sections are owned by the piece of novitai they serve; add to your section only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from rest_framework.test import APIClient

from novita_sandbox import TIMING_PRESETS, SandboxConfig, SandboxServer
from novita_sandbox.control import SandboxControl
from tenants.models import Tenant
from tenants.services import tenant_create

# --- foundation: tenants, keys, API clients --------------------------------------------------


@pytest.fixture(autouse=True)
def _clear_caches() -> None:
    """Every test starts with empty novitai caches (breaker, throttles, catalog, …)."""
    for alias in settings.NOVITAI_CACHES:
        caches[alias].clear()


@pytest.fixture(autouse=True)
def _every_pass_lists(settings: Any) -> None:
    """Tests call monitor_pass and expect it to look; the steady interval (a pass with nothing in
    transit lists nothing) has tests of its own (tests/instances/test_monitor_steady.py)."""
    settings.MONITOR_STEADY_INTERVAL_SECONDS = 0


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
def staff_client(db: None, django_user_model) -> APIClient:
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    client = APIClient()
    client.force_login(user)
    return client


def pytest_report_header(config) -> list[str]:
    """Say what the suite runs against (CI asserts Postgres and Redis)."""
    from novitai.celery import app

    return [
        f"novitai: database={str(settings.DATABASES['default']['ENGINE']).rsplit('.', 1)[-1]} "
        f"cache={str(settings.CACHES['default']['BACKEND']).rsplit('.', 1)[-1]} "
        f"broker={str(app.conf.broker_url).split(':', 1)[0]}"
    ]


# --- sandbox: the simulated Novita over HTTP on loopback ---------------------------------------


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One sandbox for the whole session, fast timing (dwell 0.1-0.2 s, app boot 0.3 s)."""
    server = SandboxServer(config=SandboxConfig(timing=TIMING_PRESETS["fast"])).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxControl:
    """The session sandbox, reset (instances, volumes, jobs, stats, calls, faults, timing,
    fidelity, capacity, prices, balance, the clock); .url, .api_base, .core_api_base, .api_key
    and the control methods (stats, instances, calls, set_faults, set_timing, advance_clock, …)."""
    control = SandboxControl(sandbox_server.url, sandbox_server.api_key)
    control.reset()
    return control


@pytest.fixture
def novita_settings(settings: Any, sandbox: SandboxControl) -> SandboxControl:
    """Point novitai's Novita client at the sandbox (NOVITA_API_BASE_URL, its core surface,
    NOVITA_API_KEY)."""
    settings.NOVITA_API_BASE_URL = sandbox.api_base
    settings.NOVITA_CORE_API_BASE_URL = sandbox.core_api_base
    settings.NOVITA_API_KEY = sandbox.api_key
    return sandbox


# --- resilience: outages seen by this process ----------------------------------------------------


@pytest.fixture(autouse=True)
def _forget_outages() -> Iterator[None]:
    """A test that took Redis down leaves no memory of it for the next (novitai/outages.py)."""
    from novitai.novita.shared import local_cache
    from novitai.outages import outages_forget

    outages_forget()
    local_cache().clear()
    yield
    outages_forget()
