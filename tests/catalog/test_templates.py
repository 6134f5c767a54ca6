"""Templates: fetched from Novita (the sandbox) on first use, cached, refreshed after the TTL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from catalog.caches import NamedCache
from catalog.errors import TemplateNotFound
from catalog.models import Template
from catalog.services import TemplateConfig, template_get
from novita_sandbox.control import SandboxControl
from novitai.errors import UpstreamUnavailable
from novitai.novita.types import EnvVar, PortSpec
from tests.catalog.conftest import upstream_calls
from tests.catalog.factories import TemplateFactory

PYTORCH = TemplateConfig(
    id="40117",
    name="pytorch-jupyter",
    image="ghcr.io/example/pytorch-lab:2.4",
    image_auth_id="k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
    start_command="",
    rootfs_size=40,
    ports=(PortSpec(8888, "http"), PortSpec(7860, "http"), PortSpec(22, "tcp")),
    envs=(EnvVar("JUPYTER_TOKEN", "demo-token"), EnvVar("PYTHONUNBUFFERED", "1")),
    min_cuda_version="12.4",  # get-template's, forwarded to the create
)


def counts(name: str) -> tuple[int, int, int, int]:
    stats = NamedCache(name).stats()
    return stats.hits, stats.misses, stats.expired, stats.sets


def test_first_use_fetches_and_stores(novita: SandboxControl) -> None:
    now = timezone.now()

    config = template_get(template_id="40117", now=now)

    assert config == PYTORCH
    row = Template.objects.get()
    assert (row.novita_id, row.image, row.image_auth_id, row.channel, row.fetched_at) == (
        "40117",
        "ghcr.io/example/pytorch-lab:2.4",
        "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
        "private",
        now,
    )
    assert row.ports == [
        {"port": 8888, "type": "http"},
        {"port": 7860, "type": "http"},
        {"port": 22, "type": "tcp"},
    ]
    assert upstream_calls(novita) == {"GET /template": {"200": 1}}
    assert counts("templates") == (0, 1, 0, 1)


def test_cached_until_the_ttl_then_refreshed(novita: SandboxControl, settings: Any) -> None:
    settings.CATALOG_TEMPLATE_TTL_SECONDS = 600
    now = timezone.now()
    template_get(template_id="40117", now=now)

    assert template_get(template_id="40117", now=now + timedelta(seconds=599)) == PYTORCH
    assert upstream_calls(novita) == {"GET /template": {"200": 1}}
    assert counts("templates") == (1, 1, 0, 1)

    later = now + timedelta(seconds=600)
    assert template_get(template_id="40117", now=later) == PYTORCH

    assert upstream_calls(novita) == {"GET /template": {"200": 2}}
    assert counts("templates") == (1, 2, 1, 2)
    assert Template.objects.get().fetched_at == later


def test_a_fresh_row_serves_when_the_cache_was_cleared(novita: SandboxControl) -> None:
    now = timezone.now()
    template_get(template_id="212", now=now)
    NamedCache("templates").clear()

    config = template_get(template_id="212", now=now + timedelta(seconds=30))

    assert (config.id, config.image, config.ports, config.envs) == (
        "212",
        "ghcr.io/example/comfyui:latest",
        (PortSpec(8188, "http"),),
        (),
    )
    assert upstream_calls(novita) == {"GET /template": {"200": 1}}


def test_unknown_template(novita: SandboxControl) -> None:
    with pytest.raises(TemplateNotFound) as raised:
        template_get(template_id="999999")

    assert (raised.value.status_code, raised.value.code) == (404, "template_not_found")
    assert raised.value.message == "Novita has no template '999999'."
    assert Template.objects.count() == 0


def test_a_template_novita_dropped_is_forgotten(novita: SandboxControl) -> None:
    TemplateFactory.create(novita_id="999999", fetched_at=timezone.now() - timedelta(days=1))

    with pytest.raises(TemplateNotFound):
        template_get(template_id="999999")

    assert Template.objects.count() == 0


@pytest.mark.parametrize("template_id", ["../etc", "", "x" * 65, "40117?x=1"])
def test_malformed_template_id_never_reaches_novita(
    novita: SandboxControl, template_id: str
) -> None:
    with pytest.raises(TemplateNotFound):
        template_get(template_id=template_id)

    assert upstream_calls(novita) == {}


def test_novita_down(novita: SandboxControl) -> None:
    stale = TemplateFactory.create(novita_id="40117", fetched_at=timezone.now() - timedelta(days=1))
    novita.set_faults(fail_next=[{"path": "/template", "status": 503, "count": -1}])

    with pytest.raises(UpstreamUnavailable) as raised:
        template_get(template_id="40117")

    assert (raised.value.status_code, raised.value.code) == (503, "upstream_unavailable")
    assert list(Template.objects.values_list("pk", "image", "fetched_at")) == [
        (stale.pk, stale.image, stale.fetched_at)
    ]
    assert NamedCache("templates").entries() == 0
