"""The admin: the delivery with its attempts inline, and the redeliver action."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tenants.models import Tenant
from tests.webhooks.support import Answer, Receiver, deliver, record
from webhooks.models import DeliveryStatus, WebhookDelivery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]

CHANGELIST = "/admin/webhooks/webhookdelivery/"


@pytest.fixture
def admin_client_(django_user_model: Any) -> Client:
    user = django_user_model.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(user)
    return client


def test_change_page_shows_the_attempts_and_no_secret(
    admin_client_: Client, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.answers.append(Answer(502, body=b"bad gateway"))
    delivery = record(tenant, receiver.url())
    deliver(delivery)

    page = admin_client_.get(f"{CHANGELIST}{delivery.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "bad gateway" in html
    assert "The receiver answered 502." in html
    assert tenant.webhook_secret.removeprefix("whsec_") not in html
    assert admin_client_.get(CHANGELIST).status_code == 200


def test_redeliver_action_resends_final_deliveries_and_skips_pending(
    admin_client_: Client, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.answers.append(Answer(410))
    receiver.default = Answer(500)
    gone = record(tenant, receiver.url())
    deliver(gone)
    pending = record(tenant, receiver.url())
    deliver(pending)
    before = WebhookDelivery.objects.get(pk=pending.pk)

    response = admin_client_.post(
        CHANGELIST,
        {"action": "redeliver", "_selected_action": [str(gone.pk), str(pending.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [
        "Redelivering 1 delivery(ies).",
        "Skipped 1 still pending: already scheduled.",
    ]
    gone.refresh_from_db()
    assert gone.status == DeliveryStatus.PENDING
    assert gone.round_attempts == 0
    after = WebhookDelivery.objects.get(pk=pending.pk)
    assert (after.status, after.attempts, after.next_attempt_at) == (
        before.status,
        before.attempts,
        before.next_attempt_at,
    )
