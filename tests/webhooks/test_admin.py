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

    selected = {"action": "redeliver", "_selected_action": [str(gone.pk), str(pending.pk)]}
    asked = admin_client_.post(CHANGELIST, selected)
    assert asked.status_code == 200  # the confirmation page: nothing sent yet
    assert "Send these deliveries again now" in asked.content.decode()
    assert WebhookDelivery.objects.get(pk=gone.pk).status == DeliveryStatus.GONE

    response = admin_client_.post(CHANGELIST, {**selected, "confirm": "yes"}, follow=True)

    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [
        f"{pending}: The delivery is still pending; its next attempt is already scheduled.",
        "Redelivering: 1.",
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


def test_the_page_redelivers_after_asking(
    admin_client_: Client, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.answers.append(Answer(410))
    gone = record(tenant, receiver.url())
    deliver(gone)
    page = admin_client_.get(f"{CHANGELIST}{gone.pk}/change/").content.decode()
    button = f"{CHANGELIST}{gone.pk}/redeliver/"
    assert f'href="{button}"' in page
    assert admin_client_.get(button).status_code == 200  # asks
    assert WebhookDelivery.objects.get(pk=gone.pk).status == DeliveryStatus.GONE
    done = admin_client_.post(button, {"confirm": "yes"})
    assert done.status_code == 302
    assert done["Location"] == f"{CHANGELIST}{gone.pk}/change/"
    assert WebhookDelivery.objects.get(pk=gone.pk).status == DeliveryStatus.PENDING
    again = admin_client_.post(button, {"confirm": "yes"}, follow=True)
    assert [str(m) for m in again.context["messages"]] == [
        f"Redelivering: {gone}.",  # the first one's, shown on this page
        f"{gone}: The delivery is still pending; its next attempt is already scheduled.",
    ]
