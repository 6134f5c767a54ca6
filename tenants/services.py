"""Writes on tenants: creation, API keys, webhook secrets."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from novitai.errors import Conflict, NotFound
from tenants.models import Tenant, TenantAPIKey


def webhook_secret_generate() -> str:
    """A Standard Webhooks secret: 'whsec_' + standard base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def tenant_api_key_create(
    *, tenant: Tenant, name: str = "default", expires_at: datetime | None = None
) -> str:
    """Creates a key and returns it in clear; only its hash is stored."""
    _, key = TenantAPIKey.objects.create_key(tenant=tenant, name=name[:50], expires_at=expires_at)
    return key


@transaction.atomic
def tenant_create(*, name: str) -> tuple[Tenant, str]:
    """Creates a tenant with a first API key; returns the tenant and the key in clear."""
    if Tenant.objects.filter(name=name).exists():
        raise Conflict(f"A tenant named {name!r} already exists.", code="tenant_exists")
    tenant = Tenant(name=name, webhook_secret=webhook_secret_generate())
    tenant.full_clean()
    tenant.save()
    return tenant, tenant_api_key_create(tenant=tenant, name=f"{name}-initial")


def tenant_get_by_name(*, name: str) -> Tenant:
    try:
        return Tenant.objects.get(name=name)
    except Tenant.DoesNotExist:
        raise NotFound(f"No tenant named {name!r}.", code="tenant_not_found") from None


@transaction.atomic
def tenant_webhook_secret_rotate(*, tenant: Tenant) -> Tenant:
    """A new secret signs from now on; the old one also signs during the overlap."""
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    tenant.previous_webhook_secret = tenant.webhook_secret
    tenant.previous_webhook_secret_expires_at = timezone.now() + timedelta(
        hours=settings.WEBHOOK_SECRET_ROTATION_OVERLAP_HOURS
    )
    tenant.webhook_secret = webhook_secret_generate()
    tenant.save(
        update_fields=[
            "webhook_secret",
            "previous_webhook_secret",
            "previous_webhook_secret_expires_at",
        ]
    )
    return tenant


def tenant_signing_secrets(*, tenant: Tenant) -> list[str]:
    """The secrets that sign a webhook now: the current one, and the previous during overlap."""
    result = [tenant.webhook_secret]
    expires = tenant.previous_webhook_secret_expires_at
    if tenant.previous_webhook_secret and expires and expires > timezone.now():
        result.append(tenant.previous_webhook_secret)
    return result
