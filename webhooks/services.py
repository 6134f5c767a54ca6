"""Writes on webhook deliveries: record (the outbox), deliver, sweep, redeliver, rotate.

A delivery row is written in the transaction of the state change it reports. After commit a
"webhooks.deliver" message wakes a worker up; the sweeper ("webhooks.sweep") sends one again for
every due row whose wake-up is missing or stale, so a lost message only delays a delivery. An
attempt claims its row first (a short transaction, SKIP LOCKED, which also pushes
`next_attempt_at` out by a lease), then signs and POSTs with no transaction or lock held, then
records its result with one conditional update fenced by the attempt number. Retries are
scheduled in `next_attempt_at`, never by Celery countdowns.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from novitai.errors import Conflict
from novitai.logging import log_context
from novitai.outages import broker_guard
from novitai.retry import RETRY_AFTER_CAP_SECONDS, jittered, parse_retry_after
from tenants.selectors import Tenant, tenant_get
from tenants.services import tenant_signing_secrets, tenant_webhook_secret_rotate
from webhooks import metrics
from webhooks.models import AttemptResult, DeliveryAttempt, DeliveryStatus, WebhookDelivery
from webhooks.transport import PostFailed, PostResult, webhook_post

logger = logging.getLogger(__name__)

USER_AGENT = "novitai-webhooks/1.0 (Standard Webhooks)"
RESPONSE_EXCERPT_LENGTH = 512
ERROR_LENGTH = 500
# Jitter of a scheduled retry: the schedule's delay times a factor in [1 - J, 1 + J].
RETRY_JITTER = 0.2
# A 429/503 Retry-After is honoured up to this long.
RETRY_AFTER_CAP = timedelta(seconds=RETRY_AFTER_CAP_SECONDS)
# A wake-up not acted on for this long is presumed lost; the sweeper sends another.
REDISPATCH_AFTER = timedelta(seconds=60)
# Due rows the sweeper dispatches per run at most (the next run takes the rest).
SWEEP_BATCH = 500

_FINAL = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.GONE)


class WebhookBody(TypedDict):
    """A delivery's body as sent and signed (the row's `payload`; `webhook_body` serializes it).
    `data` is the subject's representation: for instance events, instances.selectors'
    InstanceRepresentation (webhooks knows no app above it, so it is a mapping here)."""

    type: str  # "instance.ready", …
    timestamp: str  # when it happened: ISO 8601, UTC, "Z"
    data: Mapping[str, Any]


@dataclass(frozen=True)
class WebhookEvent:
    """An event to record: what `webhook_event_record` takes, for `webhook_events_record`."""

    tenant: Tenant
    url: str
    event_type: str
    data: Mapping[str, Any]
    instance_id: uuid.UUID | None = None
    occurred_at: datetime | None = None


def _delivery_of(event: WebhookEvent, *, now: datetime) -> WebhookDelivery:
    """The outbox row of an event (unsaved): its `webhook-id`, body and first due time."""
    occurred_at = event.occurred_at or now
    body: WebhookBody = {
        "type": event.event_type,
        "timestamp": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": event.data,
    }
    return WebhookDelivery(
        tenant=event.tenant,
        event_id=f"msg_{uuid.uuid4().hex}",
        event_type=event.event_type,
        target_url=event.url,
        instance_id=event.instance_id,
        payload=body,
        next_attempt_at=occurred_at,
        dispatched_at=now,
    )


def webhook_event_record(
    *,
    tenant: Tenant,
    url: str,
    event_type: str,
    data: Mapping[str, Any],
    instance_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> WebhookDelivery:
    """Records an event for delivery. Call it inside the transaction of the state change that
    caused it: the row is the outbox. Delivery is attempted after commit and re-driven by the
    sweeper if that wake-up is lost."""
    event = WebhookEvent(
        tenant=tenant,
        url=url,
        event_type=event_type,
        data=data,
        instance_id=instance_id,
        occurred_at=occurred_at,
    )
    delivery = _delivery_of(event, now=timezone.now())
    delivery.save(force_insert=True)
    transaction.on_commit(lambda: _enqueue_delivery(delivery.pk), robust=True)
    return delivery


def webhook_events_record(*, events: Sequence[WebhookEvent]) -> list[WebhookDelivery]:
    """`webhook_event_record` of many events at once, inside the transaction of the state changes
    that caused them: the same rows, written by one INSERT (per database batch), and one
    on-commit wake-up that sends a "webhooks.deliver" for each."""
    if not events:
        return []
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create([_delivery_of(e, now=now) for e in events])
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: _enqueue_deliveries(ids), robust=True)
    return deliveries


def _enqueue_delivery(delivery_id: uuid.UUID) -> bool:
    """Wakes a worker up to deliver now (the sweeper is the guarantee). False when the broker did
    not take the message (Redis down: counted and logged once by novitai/outages.py): the row is
    marked not dispatched, so that the next sweep sends it again."""
    from novitai.celery import app

    def send() -> object:
        # A web process has no task modules imported (Celery imports them in workers): there the
        # task is sent by name, as jobs are, where a registry lookup used to find nothing and
        # send nothing (the sweeper delivered it up to a sweep later).
        task = app.tasks.get("webhooks.deliver")
        if task is not None:
            return task.apply_async(args=[str(delivery_id)])
        return app.send_task("webhooks.deliver", args=[str(delivery_id)])

    if broker_guard("webhook", send):
        return True
    WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
        dispatched_at=None
    )
    return False


def webhook_deliveries_wake(*, delivery_ids: Sequence[uuid.UUID]) -> int:
    """A wake-up for each delivery; returns how many were sent. The first one the broker does
    not take stops the rest, which are marked not dispatched for the next sweep."""
    for sent, delivery_id in enumerate(delivery_ids):
        if _enqueue_delivery(delivery_id) is False:
            WebhookDelivery.objects.filter(
                pk__in=list(delivery_ids[sent + 1 :]), status=DeliveryStatus.PENDING
            ).update(dispatched_at=None)
            return sent
    return len(delivery_ids)


def _enqueue_deliveries(delivery_ids: list[uuid.UUID]) -> None:
    webhook_deliveries_wake(delivery_ids=delivery_ids)


# --- signing ----------------------------------------------------------------------------------


def webhook_body(payload: dict[str, Any]) -> str:
    """The exact body sent (and signed): compact JSON with sorted keys, stable across attempts
    whatever order the database returns the payload's keys in."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def webhook_headers(
    *, event_id: str, body: str, secrets: list[str], at: datetime
) -> dict[str, str]:
    """Standard Webhooks headers of one attempt: one `v1,` signature per signing secret."""
    at = at.astimezone(UTC)  # standardwebhooks reads the wall clock as UTC
    signatures = [Webhook(secret).sign(event_id, at, body) for secret in secrets]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


# --- the retry schedule -----------------------------------------------------------------------


def retry_delay(
    *,
    round_attempts: int,
    status_code: int | None,
    retry_after: str | None,
    now: datetime,
    rng: random.Random | None = None,
) -> timedelta | None:
    """How long to wait after the `round_attempts`-th failed attempt of a round; None when the
    schedule has run out. 429 and 503 with Retry-After wait at least that long (capped at
    RETRY_AFTER_CAP; novitai/retry.py reads the header)."""
    schedule: list[int] = settings.WEBHOOK_RETRY_SCHEDULE
    if round_attempts > len(schedule):
        return None
    seconds = jittered(schedule[round_attempts - 1], spread=RETRY_JITTER, rng=rng)
    if status_code in (429, 503):
        wait = parse_retry_after(
            retry_after, now=now.timestamp(), cap=RETRY_AFTER_CAP.total_seconds()
        )
        if wait is not None:
            seconds = max(seconds, wait)
    return timedelta(seconds=seconds)


def _max_round_attempts() -> int:
    return len(settings.WEBHOOK_RETRY_SCHEDULE) + 1


# What a delivery task may take besides its POST (bounded by WEBHOOK_TIMEOUT_SECONDS, see
# transport.py): its few queries and the signing, with room to spare.
DELIVER_OVERHEAD_SECONDS = 30


def deliver_time_limit() -> float:
    """The hard time limit of the "webhooks.deliver" task (its soft one is 10 s shorter)."""
    return float(settings.WEBHOOK_TIMEOUT_SECONDS) + DELIVER_OVERHEAD_SECONDS


def _lease() -> timedelta:
    """How long a claimed attempt owns its row: longer than its task may run at all, so that the
    sweeper never sends a delivery again while its first attempt is still under way."""
    return timedelta(seconds=deliver_time_limit() + DELIVER_OVERHEAD_SECONDS)


# --- delivering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    delivery: WebhookDelivery
    number: int


def _claim(delivery_id: uuid.UUID, now: datetime) -> _Claim | None:
    """Takes the due attempt of a pending delivery, or None when it is not due, not pending,
    or in another worker's hands. Safe with any number of concurrent callers."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None
        if delivery.round_attempts >= _max_round_attempts():
            # Every attempt of the round was claimed and none recorded an answer (workers
            # killed mid-attempt): stop rather than loop.
            delivery.status = DeliveryStatus.FAILED
            delivery.dispatched_at = None
            delivery.last_error = "The retry schedule ran out without a recorded answer."
            delivery.save(update_fields=["status", "dispatched_at", "last_error"])
            metrics.deliveries.labels(outcome="failed").inc()
            return None
        delivery.attempts += 1
        delivery.round_attempts += 1
        delivery.next_attempt_at = now + _lease()
        delivery.dispatched_at = None
        delivery.save(
            update_fields=["attempts", "round_attempts", "next_attempt_at", "dispatched_at"]
        )
    return _Claim(delivery=delivery, number=delivery.attempts)


def webhook_deliver(*, delivery_id: uuid.UUID) -> DeliveryAttempt | None:
    """Makes the due attempt of one delivery, if it is due and nobody else is making it.
    Returns the attempt made, or None when there was nothing to do."""
    claim = _claim(delivery_id, timezone.now())
    if claim is None:
        return None
    delivery = claim.delivery
    with log_context(
        delivery_id=str(delivery.pk), event_id=delivery.event_id, instance_id=delivery.instance_id
    ):
        tenant = tenant_get(tenant_id=delivery.tenant_id)
        body = webhook_body(delivery.payload)
        attempted_at = timezone.now()
        headers = webhook_headers(
            event_id=delivery.event_id,
            body=body,
            secrets=tenant_signing_secrets(tenant=tenant),
            at=attempted_at,
        )
        outcome: PostResult | PostFailed
        try:
            outcome = webhook_post(
                url=delivery.target_url,
                body=body.encode(),
                headers=headers,
                timeout_seconds=settings.WEBHOOK_TIMEOUT_SECONDS,
            )
        except PostFailed as failure:
            outcome = failure
        return _record(
            claim=claim,
            attempted_at=attempted_at,
            webhook_timestamp=int(headers["webhook-timestamp"]),
            outcome=outcome,
        )


def _attempt_fields(outcome: PostResult | PostFailed) -> dict[str, Any]:
    if isinstance(outcome, PostFailed):
        return {
            "result": AttemptResult(outcome.kind.value),
            "status_code": None,
            "error": outcome.message[:ERROR_LENGTH],
            "address": outcome.address,
            "latency_ms": outcome.latency_ms,
            "response_excerpt": "",
        }
    if 200 <= outcome.status < 300:
        result, error = AttemptResult.SUCCESS, ""
    elif outcome.status == 410:
        result, error = AttemptResult.GONE, "The receiver answered 410 Gone: no further attempts."
    else:
        result, error = AttemptResult.HTTP_ERROR, f"The receiver answered {outcome.status}."
    return {
        "result": result,
        "status_code": outcome.status,
        "error": error,
        "address": outcome.address,
        "latency_ms": outcome.latency_ms,
        "response_excerpt": outcome.body.decode("utf-8", "replace")[:RESPONSE_EXCERPT_LENGTH],
    }


def _record(
    *,
    claim: _Claim,
    attempted_at: datetime,
    webhook_timestamp: int,
    outcome: PostResult | PostFailed,
) -> DeliveryAttempt:
    delivery = claim.delivery
    fields = _attempt_fields(outcome)
    result: AttemptResult = fields["result"]
    now = timezone.now()
    update: dict[str, Any] = {
        "last_status_code": fields["status_code"],
        "last_error": fields["error"],
        "dispatched_at": None,
    }
    if result == AttemptResult.SUCCESS:
        update |= {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
    elif result == AttemptResult.GONE:
        update |= {"status": DeliveryStatus.GONE}
    else:
        delay = retry_delay(
            round_attempts=delivery.round_attempts,
            status_code=fields["status_code"],
            retry_after=outcome.retry_after if isinstance(outcome, PostResult) else None,
            now=now,
        )
        if delay is None:
            update |= {"status": DeliveryStatus.FAILED}
        else:
            update |= {"next_attempt_at": now + delay}
    with transaction.atomic():
        attempt = DeliveryAttempt.objects.create(
            delivery=delivery,
            number=claim.number,
            attempted_at=attempted_at,
            webhook_timestamp=webhook_timestamp,
            **fields,
        )
        # Fenced by the attempt number: a claim that outlived its lease records nothing here.
        recorded = WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=claim.number
        ).update(**update)

    metrics.attempts.labels(result=result.value).inc()
    outcome_label = str(update.get("status", "retry"))
    if recorded:
        metrics.deliveries.labels(outcome=outcome_label).inc()
        if result == AttemptResult.SUCCESS and delivery.delivered_at is None:
            metrics.delivery_lag.observe(max(0.0, (now - _occurred_at(delivery)).total_seconds()))
    logger.log(
        logging.INFO if result == AttemptResult.SUCCESS else logging.WARNING,
        "webhook %s attempt %d to %s: %s%s -> %s",
        delivery.event_type,
        claim.number,
        urlsplit(delivery.target_url).hostname,
        result.value,
        f" {fields['status_code']}" if fields["status_code"] is not None else "",
        outcome_label if recorded else "superseded",
        extra={
            "attempt": claim.number,
            "result": result.value,
            "status_code": fields["status_code"],
            "latency_ms": fields["latency_ms"],
            "address": fields["address"],
        },
    )
    return attempt


def _occurred_at(delivery: WebhookDelivery) -> datetime:
    try:
        return datetime.fromisoformat(str(delivery.payload["timestamp"]))
    except (KeyError, TypeError, ValueError):
        return delivery.created_at


# --- sweeping and redelivering -----------------------------------------------------------------


def webhook_sweep(*, limit: int = SWEEP_BATCH) -> list[uuid.UUID]:
    """Due pending deliveries with no recent wake-up: marks them dispatched and returns their
    ids, for the caller to send one "webhooks.deliver" each. Concurrent sweeps take disjoint
    rows (SKIP LOCKED; SQLite serialises writers)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - REDISPATCH_AFTER))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids).update(dispatched_at=now)
    return ids


def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Sends a delivered, failed or gone delivery again, now, with the same `webhook-id` and a
    fresh signature; failing, it retries on a new round of the schedule."""
    now = timezone.now()
    with transaction.atomic():
        updated = WebhookDelivery.objects.filter(pk=delivery.pk, status__in=_FINAL).update(
            status=DeliveryStatus.PENDING, round_attempts=0, next_attempt_at=now, dispatched_at=now
        )
        if not updated:
            raise Conflict(
                "The delivery is still pending; its next attempt is already scheduled.",
                code="delivery_pending",
            )
        transaction.on_commit(lambda: _enqueue_delivery(delivery.pk), robust=True)
    delivery.refresh_from_db()
    logger.info("webhook %s redelivery requested", delivery.event_id)
    return delivery


@dataclass(frozen=True)
class RotatedSecret:
    secret: str
    previous_secret_expires_at: datetime | None


def webhook_secret_rotate(*, tenant: Tenant) -> RotatedSecret:
    """A new signing secret for the tenant; the previous one keeps signing during the overlap."""
    tenant = tenant_webhook_secret_rotate(tenant=tenant)
    logger.info("webhook secret rotated for tenant %s", tenant.name)
    return RotatedSecret(
        secret=tenant.webhook_secret,
        previous_secret_expires_at=tenant.previous_webhook_secret_expires_at,
    )
