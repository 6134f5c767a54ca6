"""page and page_size on every list: a bad value is a 400 naming it (DRF ignored a bad
page_size, capped a large one and read `?page=` as the first page); found by fuzzing."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import CatalogState
from tests.novitai.test_auth import assert_envelope

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_catalog(db: None) -> None:
    """Regions and products read the catalog without syncing it from Novita."""
    CatalogState.objects.create(last_success_at=timezone.now(), last_outcome="success")


LISTS = [
    "/api/v1/instances/",
    "/api/v1/jobs/",
    "/api/v1/regions/",
    "/api/v1/products/",
    "/api/v1/webhooks/deliveries/",
]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("value", ["", "0", "-1", "abc", "1.5", "1e3", "true", "null", " 1"])
def test_a_bad_page_is_400(api_client: APIClient, path: str, value: str) -> None:
    error = assert_envelope(api_client.get(path, {"page": value}), 400, "validation_error")
    assert set(error["details"]) == {"page"}


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("value", ["", "0", "-5", "abc", "false", "201", "100000"])
def test_a_bad_page_size_is_400(api_client: APIClient, path: str, value: str) -> None:
    error = assert_envelope(api_client.get(path, {"page_size": value}), 400, "validation_error")
    assert error["details"] == {"page_size": ["An integer from 1 to 200."]}


@pytest.mark.parametrize("path", LISTS)
def test_good_paging_is_accepted(api_client: APIClient, path: str) -> None:
    for params in ({"page": "1"}, {"page_size": "1"}, {"page_size": "200", "page": "1"}):
        assert api_client.get(path, params).status_code == 200, params


def test_events_of_an_instance_are_paged_the_same_way(api_client: APIClient) -> None:
    # The id is checked first: an unknown instance is a 404 whatever the paging.
    path = f"/api/v1/instances/{uuid.uuid4()}/events/"
    assert_envelope(api_client.get(path, {"page": "0"}), 404, "instance_not_found")


@pytest.mark.parametrize("page", ["2", "1000000000000000001", "9" * 5000])
def test_a_page_past_the_last_is_404(api_client: APIClient, page: str) -> None:
    # However large: a valid page number, just not one that exists.
    error = assert_envelope(api_client.get("/api/v1/jobs/", {"page": page}), 404, "not_found")
    assert error["message"].startswith("Page ")
