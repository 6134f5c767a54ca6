"""Idempotency-Key for POST /instances/, with Stripe's semantics, per tenant.

- same key, same request → the first answer again, status and body byte for byte;
- same key, another request → 422; the first request still running → 409;
- only answers of requests that ran are stored: validation errors and refusals (quota) are not,
  so the client can fix the request and send it again with the same key;
- records are kept IDEMPOTENCY_KEY_TTL_HOURS (then purged; an older key is a new request).

The record is claimed (in_progress, committed) before the create transaction; the create's
transaction stores the answer and marks it done, so a key never outlives its instance's commit
without its answer. A claim whose request died is taken over after IDEMPOTENCY_IN_FLIGHT_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from instances.models import IdempotencyKey, IdempotencyStatus, Instance
from novitai.errors import Conflict, Unprocessable, ValidationFailed
from tenants.selectors import Tenant

HEADER = "Idempotency-Key"
# Printable ASCII, 1-255 characters (Stripe's limit).
KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")


@dataclass(frozen=True)
class Replay:
    status: int
    body: bytes


@dataclass(frozen=True)
class Claim:
    record_id: int
    token: str


def idempotency_key_validate(value: str) -> str:
    if not KEY_RE.match(value) or value.strip() != value:
        raise ValidationFailed(
            "The Idempotency-Key header must be 1-255 printable ASCII characters "
            "without leading or trailing spaces.",
            code="invalid_idempotency_key",
            details={HEADER: ["1-255 printable ASCII characters."]},
        )
    return value


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    """sha256 of the method, the path and the body as canonical JSON (key order and spacing
    do not matter)."""
    canonical = json.dumps(
        [method.upper(), path, body], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _expired_before(now: datetime) -> datetime:
    return now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)


def _stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.IDEMPOTENCY_IN_FLIGHT_SECONDS)


def idempotency_lookup(*, tenant: Tenant, key: str, fingerprint: str) -> Replay | None:
    """The stored answer for the key; None when the key is new (or expired, or its first
    request died). 422 when it was used for another request, 409 while that one runs."""
    now = timezone.now()
    record = IdempotencyKey.objects.filter(tenant=tenant, key=key).first()
    if record is None:
        return None
    if record.created_at < _expired_before(now):
        IdempotencyKey.objects.filter(pk=record.pk, created_at=record.created_at).delete()
        return None
    if record.fingerprint != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request.",
            code="idempotency_key_reused",
        )
    if record.status == IdempotencyStatus.IN_PROGRESS:
        if record.locked_at >= _stale_before(now):
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                code="idempotency_key_in_flight",
            )
        return None
    return Replay(status=record.response_status or 200, body=bytes(record.response_body or b""))


def idempotency_begin(*, tenant: Tenant, key: str, fingerprint: str) -> Claim | Replay:
    """Claims the key for this request (committed at once), or answers as lookup does."""
    for _ in range(2):
        now = timezone.now()
        token = uuid.uuid4().hex
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    tenant=tenant,
                    key=key,
                    fingerprint=fingerprint,
                    lock_token=token,
                    created_at=now,
                    locked_at=now,
                )
            return Claim(record_id=record.pk, token=token)
        except IntegrityError:
            pass
        taken = IdempotencyKey.objects.filter(
            tenant=tenant,
            key=key,
            fingerprint=fingerprint,
            status=IdempotencyStatus.IN_PROGRESS,
            locked_at__lt=_stale_before(now),
        )
        record_id = taken.values_list("pk", flat=True).first()
        if record_id is not None and taken.filter(pk=record_id).update(
            lock_token=token, locked_at=now
        ):
            return Claim(record_id=record_id, token=token)
        replay = idempotency_lookup(tenant=tenant, key=key, fingerprint=fingerprint)
        if replay is not None:
            return replay
    raise Conflict(
        "A request with this Idempotency-Key is still being processed; retry shortly.",
        code="idempotency_key_in_flight",
    )


def idempotency_complete(
    *, claim: Claim, status: int, body: bytes, instance: Instance | None
) -> None:
    """Stores the answer; call it inside the transaction that made it."""
    updated = IdempotencyKey.objects.filter(
        pk=claim.record_id, lock_token=claim.token, status=IdempotencyStatus.IN_PROGRESS
    ).update(
        status=IdempotencyStatus.DONE,
        response_status=status,
        response_body=body,
        instance=instance,
    )
    if not updated:
        raise Conflict(
            "Another request took this Idempotency-Key over; retry to get its answer.",
            code="idempotency_key_in_flight",
        )


def idempotency_abandon(*, claim: Claim) -> None:
    """The request did not run to the end (refused, or failed): the key is free again."""
    IdempotencyKey.objects.filter(
        pk=claim.record_id, lock_token=claim.token, status=IdempotencyStatus.IN_PROGRESS
    ).delete()


def idempotency_keys_purge() -> int:
    """Deletes records older than IDEMPOTENCY_KEY_TTL_HOURS (periodic)."""
    deleted, _ = IdempotencyKey.objects.filter(
        created_at__lt=_expired_before(timezone.now())
    ).delete()
    return deleted
