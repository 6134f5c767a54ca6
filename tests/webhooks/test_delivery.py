"""Deliveries reach a real receiver on loopback and verify with the reference library."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tenants.models import Tenant
from tenants.services import webhook_secret_generate
from tests.webhooks.support import (
    INSTANCE_DATA,
    INSTANCE_ID,
    Answer,
    Receiver,
    deliver,
    make_due,
    record,
)
from webhooks.models import AttemptResult, DeliveryStatus, WebhookDelivery
from webhooks.services import (
    USER_AGENT,
    webhook_body,
    webhook_deliver,
    webhook_headers,
    webhook_sweep,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


def test_delivery_is_signed_and_verifies_with_the_reference_verifier(
    tenant: Tenant, receiver: Receiver
) -> None:
    delivery = record(tenant, receiver.url())
    before = int(timezone.now().timestamp())

    attempt = deliver(delivery)

    assert len(receiver.requests) == 1
    sent = receiver.requests[0]
    assert sent.path == "/hooks/novitai"
    assert sent.headers["webhook-id"] == delivery.event_id
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"] == USER_AGENT
    assert sent.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert before <= int(sent.headers["webhook-timestamp"]) <= before + 5
    assert sent.headers["webhook-signature"].startswith("v1,")
    assert " " not in sent.headers["webhook-signature"]  # one secret: one signature
    parsed = Webhook(tenant.webhook_secret).verify(sent.body, sent.headers)
    assert parsed == {
        "type": "instance.ready",
        "timestamp": delivery.payload["timestamp"],
        "data": INSTANCE_DATA,
    }
    assert sent.body == webhook_body(delivery.payload).encode()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 200
    assert delivery.last_error == ""
    assert delivery.delivered_at is not None
    assert attempt.number == 1
    assert attempt.result == AttemptResult.SUCCESS
    assert attempt.status_code == 200
    assert attempt.address == "127.0.0.1"
    assert attempt.webhook_timestamp == int(sent.headers["webhook-timestamp"])
    assert attempt.response_excerpt == "ok"


def test_reference_verifier_rejects_tampering_a_wrong_secret_and_a_stale_timestamp(
    tenant: Tenant, receiver: Receiver
) -> None:
    delivery = record(tenant, receiver.url())
    deliver(delivery)
    sent = receiver.requests[0]
    verifier = Webhook(tenant.webhook_secret)

    tampered = sent.body.replace(b'"ready"', b'"failed"')
    assert tampered != sent.body
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(tampered, sent.headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(webhook_secret_generate()).verify(sent.body, sent.headers)

    body = webhook_body(delivery.payload)
    for skew, message in ((-timedelta(minutes=6), "too old"), (timedelta(minutes=6), "too new")):
        headers = webhook_headers(
            event_id=delivery.event_id,
            body=body,
            secrets=[tenant.webhook_secret],
            at=datetime.now(UTC) + skew,
        )
        with pytest.raises(WebhookVerificationError, match=message):
            verifier.verify(body.encode(), headers)


def test_three_failures_then_success_makes_four_attempts_with_the_same_webhook_id(
    tenant: Tenant, receiver: Receiver, settings: pytest.FixtureRequest
) -> None:
    receiver.answers.extend([Answer(500, body=b"boom")] * 3)
    delivery = record(tenant, receiver.url())

    for expected_attempts in (1, 2, 3):
        attempt = deliver(delivery)
        assert attempt.result == AttemptResult.HTTP_ERROR
        assert attempt.status_code == 500
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING
        assert delivery.attempts == expected_attempts
        assert delivery.last_status_code == 500
        assert delivery.last_error == "The receiver answered 500."
        assert delivery.next_attempt_at > timezone.now()  # the schedule waits …
        assert webhook_deliver(delivery_id=delivery.pk) is None  # … and nothing is sent early
        make_due(delivery)

    deliver(delivery)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 4
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.event_id] * 4
    for sent in receiver.requests:
        Webhook(tenant.webhook_secret).verify(sent.body, sent.headers)
    assert list(delivery.attempt_log.values_list("number", "status_code", "result")) == [
        (1, 500, "http_error"),
        (2, 500, "http_error"),
        (3, 500, "http_error"),
        (4, 200, "success"),
    ]
    make_due(delivery)
    assert webhook_deliver(delivery_id=delivery.pk) is None
    assert len(receiver.requests) == 4


def test_retry_waits_follow_the_schedule(tenant: Tenant, receiver: Receiver, settings) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = [100, 1000]
    receiver.default = Answer(500)
    delivery = record(tenant, receiver.url())

    waits = []
    for _ in range(2):
        attempt = deliver(delivery)
        delivery.refresh_from_db()
        waits.append((delivery.next_attempt_at - attempt.attempted_at).total_seconds())
        make_due(delivery)

    assert 80 <= waits[0] <= 121  # 100 s ± 20 % jitter (+ the attempt's own duration)
    assert 800 <= waits[1] <= 1201


def test_410_stops_for_good(tenant: Tenant, receiver: Receiver) -> None:
    receiver.default = Answer(410, body=b"gone")
    delivery = record(tenant, receiver.url())

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.GONE
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.GONE
    assert delivery.last_status_code == 410
    make_due(delivery)
    assert webhook_sweep() == []
    assert webhook_deliver(delivery_id=delivery.pk) is None
    assert len(receiver.requests) == 1
    assert delivery.attempt_log.count() == 1


def test_schedule_exhaustion_marks_the_delivery_failed(
    tenant: Tenant, receiver: Receiver, settings
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]
    receiver.default = Answer(404)
    delivery = record(tenant, receiver.url())

    results = [deliver(delivery).status_code for _ in range(3)]

    assert results == [404, 404, 404]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 3
    assert delivery.last_error == "The receiver answered 404."
    assert webhook_deliver(delivery_id=delivery.pk) is None
    assert webhook_sweep() == []
    assert len(receiver.requests) == 3


def test_redirect_is_not_followed_and_is_a_failed_attempt(
    tenant: Tenant, receiver: Receiver, sink: Receiver
) -> None:
    receiver.default = Answer(302, headers={"Location": sink.url("/internal")})
    delivery = record(tenant, receiver.url())

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.HTTP_ERROR
    assert attempt.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert sink.connections == 0
    assert sink.requests == []


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_on_429_and_503(
    tenant: Tenant, receiver: Receiver, settings, status: int
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = [5]
    receiver.default = Answer(status, headers={"Retry-After": "600"})
    delivery = record(tenant, receiver.url())

    attempt = deliver(delivery)

    delivery.refresh_from_db()
    wait = (delivery.next_attempt_at - attempt.attempted_at).total_seconds()
    assert 600 <= wait <= 601
    assert delivery.status == DeliveryStatus.PENDING


def test_retry_after_is_ignored_on_other_statuses(
    tenant: Tenant, receiver: Receiver, settings
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = [5]
    receiver.default = Answer(500, headers={"Retry-After": "600"})
    delivery = record(tenant, receiver.url())

    attempt = deliver(delivery)

    delivery.refresh_from_db()
    assert 4 <= (delivery.next_attempt_at - attempt.attempted_at).total_seconds() <= 7


def test_timeout_is_a_retried_attempt(tenant: Tenant, silent_port: int, settings) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    delivery = record(tenant, f"http://127.0.0.1:{silent_port}/hook")

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.TIMEOUT
    assert attempt.status_code is None
    assert attempt.error == "No answer within 0.3 s."
    assert attempt.address == "127.0.0.1"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_status_code is None
    assert delivery.last_error == "No answer within 0.3 s."


def test_connection_refused_is_a_retried_attempt(tenant: Tenant, closed_port: int) -> None:
    delivery = record(tenant, f"http://127.0.0.1:{closed_port}/hook")

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.CONNECTION_ERROR
    assert attempt.error.startswith("Connection failed: ")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1


def test_unresolvable_host_is_a_retried_attempt(tenant: Tenant) -> None:
    delivery = record(tenant, "https://receiver.invalid/hook")

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.DNS_ERROR
    assert attempt.error == "The host name does not resolve."
    assert attempt.address == ""
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING


def test_response_body_read_is_capped(tenant: Tenant, receiver: Receiver) -> None:
    receiver.default = Answer(200, body=b"x" * 100_000)
    delivery = record(tenant, receiver.url())

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.SUCCESS
    assert attempt.response_excerpt == "x" * 512


def test_lost_broker_message_is_delivered_by_the_sweeper(
    tenant: Tenant, receiver: Receiver
) -> None:
    # The on-commit wake-up never runs here (the test transaction never commits): lost.
    delivery = record(tenant, receiver.url())
    assert webhook_sweep() == []  # a wake-up was sent moments ago: not presumed lost yet

    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        dispatched_at=timezone.now() - timedelta(minutes=2)
    )
    due = webhook_sweep()

    assert due == [delivery.pk]
    assert webhook_sweep() == []  # dispatched again just now: no second wake-up
    for pk in due:
        webhook_deliver(delivery_id=pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert len(receiver.requests) == 1


def test_sweeper_redrives_a_due_retry_at_once(tenant: Tenant, receiver: Receiver) -> None:
    receiver.answers.append(Answer(500))
    delivery = record(tenant, receiver.url())
    deliver(delivery)
    assert webhook_sweep() == []  # not due yet

    make_due(delivery)

    assert webhook_sweep() == [delivery.pk]
    webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 2


def test_a_claimed_attempt_is_not_sent_twice(tenant: Tenant, receiver: Receiver) -> None:
    from webhooks.services import _claim

    delivery = record(tenant, receiver.url())
    claim = _claim(delivery.pk, timezone.now())
    assert claim is not None

    assert webhook_deliver(delivery_id=delivery.pk) is None
    assert webhook_sweep() == []
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=50)


def test_the_claim_outlasts_the_deliver_tasks_hard_time_limit(
    tenant: Tenant, receiver: Receiver, settings
) -> None:
    """A claim's lease that ran out while its attempt still ran let the sweeper send the
    delivery again (5 POSTs for 2 deliveries): the lease is longer than the task may ever run."""
    from webhooks.services import _claim
    from webhooks.tasks import deliver as deliver_task

    hard_limit = deliver_task.time_limit or settings.CELERY_TASK_TIME_LIMIT
    assert (deliver_task.time_limit, deliver_task.soft_time_limit) == (40.0, 30.0)
    delivery = record(tenant, receiver.url())
    claimed_at = timezone.now()
    assert _claim(delivery.pk, claimed_at) is not None
    delivery.refresh_from_db()
    lease = delivery.next_attempt_at - claimed_at
    assert lease == timedelta(seconds=70)
    assert lease > timedelta(seconds=hard_limit)


def test_an_attempt_that_outlived_its_claim_records_nothing_on_the_delivery(
    tenant: Tenant, receiver: Receiver
) -> None:
    from webhooks.services import _claim, _record
    from webhooks.transport import PostResult

    delivery = record(tenant, receiver.url())
    stale = _claim(delivery.pk, timezone.now())
    assert stale is not None
    make_due(delivery)  # the worker died; its claim expired
    deliver(delivery)  # attempt 2 delivers
    delivery.refresh_from_db()
    delivered_at = delivery.delivered_at

    _record(
        claim=stale,
        attempted_at=timezone.now(),
        webhook_timestamp=0,
        outcome=PostResult(
            status=500, retry_after=None, body=b"", address="127.0.0.1", latency_ms=1
        ),
    )

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.delivered_at == delivered_at
    assert delivery.last_status_code == 200
    assert list(delivery.attempt_log.values_list("number", "status_code")) == [(1, 500), (2, 200)]


def test_claims_that_never_answer_end_in_failed(
    tenant: Tenant, receiver: Receiver, settings
) -> None:
    from webhooks.services import _claim

    settings.WEBHOOK_RETRY_SCHEDULE = [0]
    delivery = record(tenant, receiver.url())
    for _ in range(2):  # two attempts claimed by workers that were killed mid-attempt
        assert _claim(delivery.pk, timezone.now()) is not None
        make_due(delivery)

    assert webhook_deliver(delivery_id=delivery.pk) is None

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error == "The retry schedule ran out without a recorded answer."
    assert receiver.requests == []


def test_payload_is_the_exact_body_of_the_event(tenant: Tenant, receiver: Receiver) -> None:
    occurred = datetime(2026, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    from webhooks.services import webhook_event_record

    delivery = webhook_event_record(
        tenant=tenant,
        url=receiver.url(),
        event_type="instance.failed",
        data={"id": str(INSTANCE_ID), "status": "failed"},
        instance_id=INSTANCE_ID,
        occurred_at=occurred,
    )
    deliver(delivery)

    assert json.loads(receiver.requests[0].body) == {
        "type": "instance.failed",
        "timestamp": "2026-05-01T12:30:15.250000Z",
        "data": {"id": str(INSTANCE_ID), "status": "failed"},
    }
    assert delivery.event_id.startswith("msg_")
    assert "." not in delivery.event_id


def test_next_checked_address_is_tried_when_connecting_fails(
    tenant: Tenant, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with two addresses (a DNS answer this machine cannot give: substituted), the
    first of which refuses connections."""
    from webhooks import ssrf

    monkeypatch.setattr(ssrf, "_getaddrinfo", lambda host, port: ["127.0.0.3", "127.0.0.1"])
    delivery = record(tenant, receiver.url(host="dual.test"))

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.SUCCESS
    assert attempt.address == "127.0.0.1"
    assert len(receiver.requests) == 1
    assert receiver.requests[0].headers["host"] == f"dual.test:{receiver.port}"


def test_all_checked_addresses_refusing_is_one_failed_attempt(
    tenant: Tenant, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhooks import ssrf

    monkeypatch.setattr(ssrf, "_getaddrinfo", lambda host, port: ["127.0.0.3", "127.0.0.1"])
    delivery = record(tenant, f"http://dual.test:{closed_port}/hook")

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.CONNECTION_ERROR
    assert attempt.address == "127.0.0.1"  # the last one tried
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
