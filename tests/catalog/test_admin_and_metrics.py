"""The catalog in the admin (and its sync button), and the catalog's Prometheus series."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from catalog.models import Product, Region
from catalog.services import catalog_state, catalog_sync
from novita_sandbox.control import SandboxControl
from tests.catalog.conftest import upstream_calls
from tests.catalog.factories import TemplateFactory


@pytest.fixture
def admin_client(db: None, django_user_model: Any) -> Client:
    user = django_user_model.objects.create_superuser("root")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/catalog/region/",
        "/admin/catalog/product/",
        "/admin/catalog/product/?available__exact=0&bills_spot__exact=1&q=3090",
        "/admin/catalog/template/",
        "/admin/catalog/catalogstate/",
    ],
)
def test_admin_pages(novita: SandboxControl, admin_client: Client, path: str) -> None:
    catalog_sync()
    TemplateFactory.create(novita_id="40117", envs=[{"key": "HF_TOKEN", "value": "hf_secret"}])

    response = admin_client.get(path)

    assert response.status_code == 200
    assert b"hf_secret" not in response.content


def test_admin_product_filters(novita: SandboxControl, admin_client: Client) -> None:
    catalog_sync()
    region = Region.objects.get(code="US-TX-02")

    response = admin_client.get(
        f"/admin/catalog/product/?region__id__exact={region.pk}&available__exact=0"
    )

    assert [p.novita_id for p in response.context["cl"].result_list] == [
        "h100.24c240g.sim",
        "3090.8c31g.sim",
    ]


def test_template_admin_hides_env_values(novita: SandboxControl, admin_client: Client) -> None:
    template = TemplateFactory.create(envs=[{"key": "HF_TOKEN", "value": "hf_secret"}])

    response = admin_client.get(f"/admin/catalog/template/{template.pk}/change/")

    assert response.status_code == 200
    assert b"HF_TOKEN" in response.content
    assert b"hf_secret" not in response.content


def test_admin_sync_button(novita: SandboxControl, admin_client: Client) -> None:
    page = admin_client.get("/admin/catalog/product/")
    assert b"Sync from Novita now" in page.content

    response = admin_client.post(
        "/admin/catalog/region/sync/", HTTP_REFERER="http://testserver/admin/catalog/product/"
    )

    assert (response.status_code, response["Location"]) == (
        302,
        "http://testserver/admin/catalog/product/",
    )
    assert Product.objects.count() == 19
    messages = [str(m) for m in response.wsgi_request._messages]  # type: ignore[attr-defined]
    assert messages == [
        "Catalog synced: regions created 5, regions updated 0, regions delisted 0, products "
        "created 19, products updated 0, products unavailable 0, products unchanged 0."
    ]


def test_admin_sync_refuses_get_and_foreign_referers(
    novita: SandboxControl, admin_client: Client
) -> None:
    assert admin_client.get("/admin/catalog/region/sync/").status_code == 405
    assert upstream_calls(novita) == {}

    response = admin_client.post(
        "/admin/catalog/region/sync/", HTTP_REFERER="https://evil.example/"
    )

    assert response["Location"] == "/admin/catalog/product/"


def test_admin_sync_failure_is_shown(novita: SandboxControl, admin_client: Client) -> None:
    novita.set_faults(fail_next=[{"path": "/clusters", "status": 500, "count": -1}])

    response = admin_client.post("/admin/catalog/region/sync/", follow=True)

    assert Region.objects.count() == 0
    assert b"The sync failed; the previous catalog stays in place" in response.content


def test_last_success_is_read_at_scrape_time(novita: SandboxControl, client: Client) -> None:
    before = client.get("/metrics").content.decode()
    assert "novitai_catalog_last_success_timestamp 0.0" in before

    catalog_sync()
    scraped = client.get("/metrics").content.decode()

    stamp = catalog_state().last_success_at
    assert stamp is not None
    values = [
        float(line.split()[1])
        for line in scraped.splitlines()
        if line.startswith("novitai_catalog_last_success_timestamp ")
    ]
    assert values == [stamp.timestamp()]
    assert 'novitai_catalog_sync_total{outcome="success"}' in scraped
    assert "novitai_catalog_sync_duration_seconds_count" in scraped
