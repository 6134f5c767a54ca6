"""The delivery log, redelivery and secret rotation over the API."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tenants.models import Tenant
from tenants.services import tenant_get_by_name
from tests.webhooks.support import INSTANCE_DATA, INSTANCE_ID, Answer, Receiver, make_due, record
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import webhook_deliver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]

LIST = "/api/v1/webhooks/deliveries/"
ROTATE = "/api/v1/webhooks/secret/rotate/"


def _detail(delivery: WebhookDelivery) -> str:
    return f"{LIST}{delivery.pk}/"


def _redeliver(delivery: WebhookDelivery) -> str:
    return f"{LIST}{delivery.pk}/redeliver/"


def test_four_attempts_show_in_the_delivery_log(
    api_client: APIClient, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.answers.extend([Answer(500, body=b"down")] * 3)
    delivery = record(tenant, receiver.url())
    for _ in range(4):
        webhook_deliver(delivery_id=delivery.pk)
        make_due(delivery)

    response = api_client.get(_detail(delivery))

    assert response.status_code == 200
    body = response.json()
    delivery.refresh_from_db()
    assert body["id"] == str(delivery.pk)
    assert body["event_id"] == delivery.event_id
    assert body["event_type"] == "instance.ready"
    assert body["tenant"] == "acme"
    assert body["instance"] == str(INSTANCE_ID)
    assert body["target_url"] == receiver.url()
    assert body["status"] == "delivered"
    assert body["attempts"] == 4
    assert body["next_attempt_at"] is None
    assert body["last_status_code"] == 200
    assert body["last_error"] == ""
    assert body["delivered_at"] is not None
    assert body["payload"] == {
        "type": "instance.ready",
        "timestamp": delivery.payload["timestamp"],
        "data": INSTANCE_DATA,
    }
    log = body["attempt_log"]
    assert [(a["number"], a["status_code"], a["result"]) for a in log] == [
        (1, 500, "http_error"),
        (2, 500, "http_error"),
        (3, 500, "http_error"),
        (4, 200, "success"),
    ]
    assert [a["address"] for a in log] == ["127.0.0.1"] * 4
    assert [a["response_excerpt"] for a in log] == ["down", "down", "down", "ok"]
    assert [a["error"] for a in log] == ["The receiver answered 500."] * 3 + [""]
    assert [a["webhook_timestamp"] for a in log] == [
        int(r.headers["webhook-timestamp"]) for r in receiver.requests
    ]
    assert set(log[0]) == {
        "number",
        "attempted_at",
        "webhook_timestamp",
        "result",
        "status_code",
        "latency_ms",
        "error",
        "address",
        "response_excerpt",
    }
    assert all(isinstance(a["latency_ms"], int) and a["latency_ms"] >= 0 for a in log)


def test_log_holds_no_secret_and_no_signature(
    api_client: APIClient, tenant: Tenant, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.answers.append(Answer(503))
    delivery = record(tenant, receiver.url())
    webhook_deliver(delivery_id=delivery.pk)
    make_due(delivery)
    webhook_deliver(delivery_id=delivery.pk)
    api_client.post(ROTATE)  # a second secret signs too from now on
    tenant.refresh_from_db()

    texts = [
        api_client.get(_detail(delivery)).content.decode(),
        api_client.get(LIST).content.decode(),
        caplog.text,
        "\n".join(str(vars(record)) for record in caplog.records),
    ]

    signatures = [r.headers["webhook-signature"] for r in receiver.requests]
    secret_bodies = [
        s.removeprefix("whsec_") for s in (tenant.webhook_secret, tenant.previous_webhook_secret)
    ]
    for text in texts:
        for secret in secret_bodies:
            assert secret not in text
        for signature in signatures:
            assert signature.removeprefix("v1,") not in text
        assert "whsec_" not in text
        assert "webhook-signature" not in text
    assert "webhook instance.ready attempt 1 to 127.0.0.1: http_error 503 -> retry" in caplog.text
    assert "webhook instance.ready attempt 2 to 127.0.0.1: success 200 -> delivered" in caplog.text


def test_list_is_newest_first_paginated_and_filtered(
    api_client: APIClient, tenant: Tenant, receiver: Receiver
) -> None:
    other_instance = uuid.uuid4()
    ready = record(tenant, receiver.url())
    failed = record(tenant, receiver.url(), event_type="instance.failed")
    stopped = record(tenant, receiver.url(), event_type="instance.stopped")
    WebhookDelivery.objects.filter(pk=stopped.pk).update(instance_id=other_instance)
    base = timezone.now()
    for offset, delivery in enumerate((ready, failed, stopped)):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            created_at=base + timedelta(seconds=offset)
        )
    receiver.default = Answer(410)
    webhook_deliver(delivery_id=failed.pk)

    def ids(query: str) -> list[str]:
        response = api_client.get(f"{LIST}{query}")
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["results"]]

    assert ids("") == [str(stopped.pk), str(failed.pk), str(ready.pk)]
    assert ids("?status=gone") == [str(failed.pk)]
    assert ids("?status=pending") == [str(stopped.pk), str(ready.pk)]
    assert ids("?event_type=instance.stopped") == [str(stopped.pk)]
    assert ids(f"?instance={INSTANCE_ID}") == [str(failed.pk), str(ready.pk)]
    assert ids(f"?instance={INSTANCE_ID}&status=pending") == [str(ready.pk)]
    assert ids("?event_type=instance.deleted") == []

    page = api_client.get(f"{LIST}?page_size=2").json()
    assert page["count"] == 3
    assert [item["id"] for item in page["results"]] == [str(stopped.pk), str(failed.pk)]
    assert page["next"].endswith("?page=2&page_size=2")
    second = api_client.get(f"{LIST}?page=2&page_size=2").json()
    assert [item["id"] for item in second["results"]] == [str(ready.pk)]
    item = page["results"][0]
    assert "payload" not in item
    assert "attempt_log" not in item
    assert item["next_attempt_at"] is not None  # pending: when it is due


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("instance=not-a-uuid", "instance"),
        ("event_type=" + "x" * 65, "event_type"),
        ("event_type=Instance%20Ready", "event_type"),
        # blank values were taken for "no filter" (DRF's form reading); found by fuzzing
        ("status=", "status"),
        ("instance=", "instance"),
        ("event_type=", "event_type"),
    ],
)
def test_bad_filter_values_are_400(api_client: APIClient, query: str, field: str) -> None:
    response = api_client.get(f"{LIST}?{query}")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]) == [field]


def test_tenants_see_only_their_own_deliveries_and_staff_see_all(
    api_client: APIClient,
    other_tenant_client: APIClient,
    staff_client: APIClient,
    tenant: Tenant,
    receiver: Receiver,
) -> None:
    mine = record(tenant, receiver.url())
    theirs = record(tenant_get_by_name(name="globex"), receiver.url())

    assert [d["id"] for d in api_client.get(LIST).json()["results"]] == [str(mine.pk)]
    assert [d["id"] for d in other_tenant_client.get(LIST).json()["results"]] == [str(theirs.pk)]
    staff = staff_client.get(LIST).json()["results"]
    assert {(d["id"], d["tenant"]) for d in staff} == {
        (str(mine.pk), "acme"),
        (str(theirs.pk), "globex"),
    }
    assert staff_client.get(_detail(mine)).status_code == 200


def test_another_tenants_delivery_is_404_and_untouched(
    other_tenant_client: APIClient, tenant: Tenant, receiver: Receiver
) -> None:
    delivery = record(tenant, receiver.url())
    webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()

    for response in (
        other_tenant_client.get(_detail(delivery)),
        other_tenant_client.post(_redeliver(delivery)),
        other_tenant_client.get(f"{LIST}{uuid.uuid4()}/"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "delivery_not_found"
    assert other_tenant_client.get(f"{LIST}not-a-uuid/").status_code == 404

    after = WebhookDelivery.objects.get(pk=delivery.pk)
    assert after.status == DeliveryStatus.DELIVERED
    assert after.attempts == 1
    assert len(receiver.requests) == 1


def test_anonymous_callers_are_refused(receiver: Receiver, tenant: Tenant) -> None:
    delivery = record(tenant, receiver.url())
    client = APIClient()

    for response in (
        client.get(LIST),
        client.get(_detail(delivery)),
        client.post(_redeliver(delivery)),
        client.post(ROTATE),
    ):
        assert response.status_code in (401, 403)
        assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")


@pytest.mark.parametrize("final", [Answer(200), Answer(410)])
def test_redeliver_resends_with_the_same_id_and_a_fresh_signature(
    api_client: APIClient, tenant: Tenant, receiver: Receiver, final: Answer
) -> None:
    receiver.default = final
    delivery = record(tenant, receiver.url())
    webhook_deliver(delivery_id=delivery.pk)
    first = receiver.requests[0]
    receiver.default = Answer(200)

    response = api_client.post(_redeliver(delivery))

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert body["attempts"] == 1
    assert body["next_attempt_at"] is not None
    webhook_deliver(delivery_id=delivery.pk)  # what the on-commit wake-up runs
    second = receiver.requests[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == delivery.event_id
    assert second.body == first.body
    Webhook(tenant.webhook_secret).verify(second.body, second.headers)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 2
    assert delivery.round_attempts == 1
    detail = api_client.get(_detail(delivery)).json()
    assert [a["number"] for a in detail["attempt_log"]] == [1, 2]


def test_redeliver_of_a_failed_delivery_starts_a_new_round(
    api_client: APIClient, tenant: Tenant, receiver: Receiver, settings
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = [0]
    receiver.default = Answer(500)
    delivery = record(tenant, receiver.url())
    webhook_deliver(delivery_id=delivery.pk)
    webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED

    assert api_client.post(_redeliver(delivery)).status_code == 202
    webhook_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING  # a new round, one retry left
    assert (delivery.attempts, delivery.round_attempts) == (3, 1)


def test_redeliver_of_a_pending_delivery_is_409_and_changes_nothing(
    api_client: APIClient, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.default = Answer(500)
    delivery = record(tenant, receiver.url())
    webhook_deliver(delivery_id=delivery.pk)
    before = WebhookDelivery.objects.get(pk=delivery.pk)

    response = api_client.post(_redeliver(delivery))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "delivery_pending"
    after = WebhookDelivery.objects.get(pk=delivery.pk)
    assert (after.status, after.attempts, after.round_attempts, after.next_attempt_at) == (
        before.status,
        before.attempts,
        before.round_attempts,
        before.next_attempt_at,
    )
    assert len(receiver.requests) == 1


def test_redeliver_enqueues_a_wake_up_on_commit(
    api_client: APIClient,
    tenant: Tenant,
    receiver: Receiver,
    django_capture_on_commit_callbacks,
) -> None:
    delivery = record(tenant, receiver.url())
    webhook_deliver(delivery_id=delivery.pk)

    with django_capture_on_commit_callbacks() as callbacks:
        assert api_client.post(_redeliver(delivery)).status_code == 202

    assert len(callbacks) == 1


def test_rotation_returns_the_new_secret_once_and_both_sign_during_the_overlap(
    api_client: APIClient, tenant: Tenant, receiver: Receiver, settings
) -> None:
    settings.WEBHOOK_SECRET_ROTATION_OVERLAP_HOURS = 24
    old_secret = tenant.webhook_secret

    response = api_client.post(ROTATE)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    tenant.refresh_from_db()
    new_secret = body["webhook_secret"]
    assert new_secret == tenant.webhook_secret != old_secret
    assert new_secret.startswith("whsec_")
    assert tenant.previous_webhook_secret == old_secret
    expires = tenant.previous_webhook_secret_expires_at
    assert expires is not None
    assert body["previous_secret_expires_at"] == expires.isoformat().replace("+00:00", "Z")
    assert timedelta(hours=23, minutes=59) < expires - timezone.now() <= timedelta(hours=24)

    delivery = record(tenant, receiver.url())
    webhook_deliver(delivery_id=delivery.pk)
    sent = receiver.requests[0]
    assert len(sent.headers["webhook-signature"].split(" ")) == 2
    Webhook(new_secret).verify(sent.body, sent.headers)
    Webhook(old_secret).verify(sent.body, sent.headers)

    # The overlap ends: only the new secret signs.
    Tenant.objects.filter(pk=tenant.pk).update(
        previous_webhook_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    receiver.default = Answer(200)
    later = record(tenant, receiver.url())
    webhook_deliver(delivery_id=later.pk)
    sent = receiver.requests[1]
    assert len(sent.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(sent.body, sent.headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(old_secret).verify(sent.body, sent.headers)


def test_rotation_needs_a_tenant_key(staff_client: APIClient, tenant: Tenant) -> None:
    before = tenant.webhook_secret

    response = staff_client.post(ROTATE)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    tenant.refresh_from_db()
    assert tenant.webhook_secret == before
    assert tenant.previous_webhook_secret == ""


def test_rotating_twice_keeps_only_the_latest_previous_secret(
    api_client: APIClient, tenant: Tenant
) -> None:
    first = api_client.post(ROTATE).json()["webhook_secret"]
    second = api_client.post(ROTATE).json()["webhook_secret"]

    tenant.refresh_from_db()
    assert tenant.webhook_secret == second
    assert tenant.previous_webhook_secret == first
