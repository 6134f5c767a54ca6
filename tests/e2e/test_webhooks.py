"""End to end: the caller learns of its instance by signed webhooks — delivered by the real
worker to a receiver on loopback and verified with the Standard Webhooks reference library."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from novita_sandbox.control import SandboxControl
from tenants.models import Tenant
from tests.e2e.conftest import Worker
from tests.e2e.test_lifecycle import act, until
from tests.instances.conftest import create, create_body
from tests.instances.helpers import wait_for
from tests.webhooks.support import Receiver

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def receiver(settings: Any) -> Any:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # the create request is validated here
    server = Receiver()
    yield server
    server.close()


def events(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


def test_ready_and_terminated_arrive_signed(
    worker: Worker,
    api_client: APIClient,
    api_key: str,
    tenant: Tenant,
    sandbox: SandboxControl,
    receiver: Receiver,
) -> None:
    body = create_body(name="e2e-hooks", webhook_url=receiver.url())
    response = create(api_client, body)
    assert response.status_code == 202, response.content
    instance_id = response.json()["id"]
    until(api_client, instance_id, "ready")

    wait_for(
        lambda: any(e["type"] == "instance.ready" for e in events(receiver)),
        20,
        interval=0.1,
        what="instance.ready to arrive",
    )
    act(api_client, instance_id, "delete")
    until(api_client, instance_id, "terminated")
    wait_for(
        lambda: any(e["type"] == "instance.terminated" for e in events(receiver)),
        20,
        interval=0.1,
        what="instance.terminated to arrive",
    )

    verifier = Webhook(tenant.webhook_secret)
    seen_ids = set()
    for request in receiver.requests:
        payload = verifier.verify(request.body, request.headers)
        assert payload["data"]["id"] == instance_id
        assert payload["data"]["name"] == "e2e-hooks"
        seen_ids.add(request.headers["webhook-id"])
        text = request.body.decode()
        assert api_key not in text
        assert tenant.webhook_secret not in text
    ready = next(e for e in events(receiver) if e["type"] == "instance.ready")
    assert ready["data"]["status"] == "ready"
    assert ready["data"]["endpoints"][0]["healthy"] is True
    terminated = next(e for e in events(receiver) if e["type"] == "instance.terminated")
    assert terminated["data"]["status"] == "terminated"
    # One webhook-id per event: every event delivered once here, each with its own id.
    types = [e["type"] for e in events(receiver)]
    assert sorted(types) == ["instance.ready", "instance.terminated"]
    assert len(seen_ids) == 2
    # A different secret does not verify them.
    other = Webhook("whsec_" + "A" * 43 + "=")
    with pytest.raises(Exception, match="signature"):
        other.verify(receiver.requests[0].body, receiver.requests[0].headers)
