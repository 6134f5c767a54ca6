"""The instance's JSON shape is declared three times, and they agree: what
instance_representation returns (the API's body and every webhook's `data`), its TypedDict
(InstanceRepresentation, for the code) and InstanceSerializer (the OpenAPI schema). So is the
webhook body's (WebhookBody) and the summary's (MetricsSummary and its schema)."""

from __future__ import annotations

import typing
import uuid
from typing import Any

import pytest

from instances.api.serializers import (
    EndpointSerializer,
    InstanceJobSerializer,
    InstanceSerializer,
)
from instances.models import Instance, InstanceStatus
from instances.selectors import (
    EndpointSummary,
    InstanceRepresentation,
    JobSummary,
    instance_representation,
)
from instances.services import Action, novita_name_for
from jobs.services import job_create
from overview.api.serializers import MetricsSummarySerializer
from overview.summary import MetricsSummary, metrics_summary
from tenants.selectors import Tenant
from webhooks.services import WebhookBody, webhook_event_record

pytestmark = pytest.mark.django_db


def an_instance(tenant: Tenant) -> Instance:
    pk = uuid.uuid4()
    job = job_create(
        kind=Action.PROVISION,
        task_name="instances.provision",
        subject_type="instance",
        subject_id=pk,
        tenant=tenant,
    )
    return Instance.objects.create(
        id=pk,
        tenant=tenant,
        name="shape",
        status=InstanceStatus.READY,
        template_id="212",
        rootfs_size=60,
        novita_name=novita_name_for(pk),
        novita_product_id="4090.sim",
        product_name="RTX 4090 24GB",
        endpoints=[{"port": 8188, "type": "http", "url": "http://x", "healthy": True}],
        current_job=job,
    )


def keys(shape: Any) -> set[str]:
    return set(typing.get_type_hints(shape))


def test_the_representation_its_typeddict_and_its_schema_agree(tenant: Tenant) -> None:
    body = instance_representation(an_instance(tenant))
    fields = InstanceSerializer().fields
    assert set(body) == keys(InstanceRepresentation) == set(fields)
    assert body["job"] is not None
    assert set(body["job"]) == keys(JobSummary) == set(InstanceJobSerializer().fields)
    assert set(body["endpoints"][0]) == keys(EndpointSummary) == set(EndpointSerializer().fields)


def test_a_webhook_body_has_its_declared_shape(tenant: Tenant) -> None:
    instance = an_instance(tenant)
    delivery = webhook_event_record(
        tenant=tenant,
        url="https://hooks.example/x",
        event_type="instance.ready",
        data=instance_representation(instance),
        instance_id=instance.pk,
    )
    assert set(delivery.payload) == keys(WebhookBody) == {"type", "timestamp", "data"}
    assert set(delivery.payload["data"]) == keys(InstanceRepresentation)


def test_the_summary_has_its_declared_shape_and_schema(tenant: Tenant) -> None:
    declared = keys(MetricsSummary)
    assert set(metrics_summary(tenant=tenant)) == declared - {"control_plane"}
    assert set(MetricsSummarySerializer().fields) == declared
