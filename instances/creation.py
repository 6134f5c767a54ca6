"""POST /instances/ as one service: the Idempotency-Key, the checks, the write and the answer.

    answer = instance_create_request(tenant=..., body=request.data, parse=..., ...)

In this order (instances/idempotency.py has the semantics):
1. a key already answered → that answer again (before the body is even validated: the same
   key and body get the same answer; another body under the key is a 422, in flight a 409);
2. `parse()` validates the body (the view's serializer: 400 on bad input);
3. the request is checked against the catalog (instance_request_check: 400/404/503);
4. the key is claimed (committed at once);
5. in one transaction: the instance, its event and its provision job (instance_create), and the
   answer stored under the key; anything that fails gives the key up again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from rest_framework.renderers import JSONRenderer

from instances.idempotency import (
    Claim,
    Replay,
    idempotency_abandon,
    idempotency_begin,
    idempotency_complete,
    idempotency_key_validate,
    idempotency_lookup,
    request_fingerprint,
)
from instances.selectors import instance_representation
from instances.services import InstanceRequest, instance_create, instance_request_check
from tenants.selectors import Tenant

ACCEPTED = 202


@dataclass(frozen=True)
class CreateAnswer:
    """What the create view answers: the status and body (bytes, as stored for replays) and,
    for a fresh answer, the instance's id (the Location header)."""

    status: int
    body: bytes
    instance_id: Any = None
    replayed: bool = False


def _replayed(replay: Replay) -> CreateAnswer:
    return CreateAnswer(status=replay.status, body=replay.body, replayed=True)


def instance_create_request(
    *,
    tenant: Tenant,
    body: Any,
    parse: Callable[[], InstanceRequest],
    idempotency_key: str | None,
    method: str,
    path: str,
    actor: str,
) -> CreateAnswer:
    """Creates the instance `body` asks for (202, the instance), or answers the stored answer
    of an Idempotency-Key again. `parse` validates `body` into an InstanceRequest."""
    fingerprint = ""
    if idempotency_key is not None:
        idempotency_key = idempotency_key_validate(idempotency_key)
        fingerprint = request_fingerprint(method=method, path=path, body=body)
        replay = idempotency_lookup(tenant=tenant, key=idempotency_key, fingerprint=fingerprint)
        if replay is not None:
            return _replayed(replay)
    spec = instance_request_check(request=parse(), tenant=tenant)
    claim: Claim | None = None
    if idempotency_key is not None:
        begun = idempotency_begin(tenant=tenant, key=idempotency_key, fingerprint=fingerprint)
        if isinstance(begun, Replay):
            return _replayed(begun)
        claim = begun
    try:
        with transaction.atomic():
            instance = instance_create(tenant=tenant, spec=spec, actor=actor)
            answer = JSONRenderer().render(instance_representation(instance))
            if claim is not None:
                idempotency_complete(claim=claim, status=ACCEPTED, body=answer, instance=instance)
    except BaseException:
        if claim is not None:
            idempotency_abandon(claim=claim)
        raise
    return CreateAnswer(status=ACCEPTED, body=answer, instance_id=instance.pk)
