"""Instances fixtures: the catalog synced from the sandbox, a create body, and helpers."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from catalog.services import catalog_sync
from instances.models import Instance
from novita_sandbox.control import SandboxControl
from tests.jobs.conftest import SentTasks, sent_tasks  # noqa: F401 (a fixture)

PRODUCT = "RTX 4090 24GB"
TEMPLATE = "212"  # comfyui: http 8188, no envs


@pytest.fixture
def novita(novita_settings: SandboxControl, settings: Any, db: None) -> SandboxControl:
    """The real client against the sandbox, without the request-rate ceiling; the client's
    own retries are off so that each test sees every upstream failure."""
    settings.NOVITA_RATE_LIMIT_PER_SECOND = 10_000.0
    settings.NOVITA_MAX_RETRIES = 0
    return novita_settings


@pytest.fixture
def catalog(novita: SandboxControl) -> SandboxControl:
    """Regions and products synced from the sandbox (templates load on first use)."""
    assert catalog_sync().outcome == "success"
    return novita


@pytest.fixture
def make(api_client: APIClient, catalog: SandboxControl) -> Any:
    """Creates an instance through the API (202): make(**create-body overrides)."""

    def make(**overrides: Any) -> Instance:
        response = create(api_client, create_body(**overrides))
        assert response.status_code == 202, response.content
        return Instance.objects.get(pk=response.json()["id"])

    return make


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "trainer-1", "product_name": PRODUCT, "template_id": TEMPLATE}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def create(client: APIClient, body: dict[str, Any] | None = None, *, key: str | None = None) -> Any:
    headers: dict[str, Any] = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post("/api/v1/instances/", body or create_body(), format="json", **headers)


def nothing_created(sent: SentTasks) -> None:
    assert Instance.objects.count() == 0
    assert sent.calls == []
