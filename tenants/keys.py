"""Verifying an API key: the authentication class's one call.

A module of its own, importing no more than the models: DRF imports the authentication class
while its own views module loads, and tenants.services imports novitai.errors, which imports
DRF's views.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from hmac import compare_digest

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from tenants.models import TenantAPIKey

# <8-character prefix>.<32-character secret>, as djangorestframework-api-key makes them.
_KEY_FORMAT = re.compile(r"[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}")
_KEY_GENERATOR = TenantAPIKey.objects.key_generator


@functools.cache
def _no_key_hash() -> str:
    """What a guess is compared with when no usable key has its prefix."""
    return str(_KEY_GENERATOR.hash("0" * 8 + "." + "0" * 32))


def tenant_api_key_authenticate(*, key: str, now: datetime | None = None) -> TenantAPIKey | None:
    """The usable key `key` is (its tenant loaded), or None.

    - A malformed key is refused before any query.
    - One query by prefix (unique, indexed) among usable keys: a revoked or expired key, or one
      of an inactive tenant, fails there — no row, nothing else loaded or written.
    - The secret is checked by comparing the SHA-512 of the key with the stored one with
      hmac.compare_digest: how long it takes does not depend on how much of a guess is right.
      Without a row the guess is compared with a stand-in hash, so that an unknown prefix, a
      revoked or expired key and a wrong secret cost the same: one query, one hash, one
      comparison.
    - `last_used_at` is written at most once per API_KEY_LAST_USED_INTERVAL_SECONDS, by a
      conditional UPDATE, and only when the value just read is older than that: no write on
      most requests, one among concurrent ones.
    """
    if not _KEY_FORMAT.fullmatch(key):
        return None
    now = now or timezone.now()
    api_key = TenantAPIKey.objects.get_usable_keys(now=now).filter(prefix=key[:8]).first()
    expected = api_key.hashed_key if api_key is not None else _no_key_hash()
    matches = compare_digest(str(_KEY_GENERATOR.hash(key)).encode(), expected.encode())
    if api_key is None or not matches:
        return None
    stale = now - timedelta(seconds=settings.API_KEY_LAST_USED_INTERVAL_SECONDS)
    if api_key.last_used_at is None or api_key.last_used_at <= stale:
        TenantAPIKey.objects.filter(pk=api_key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale)
        ).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
