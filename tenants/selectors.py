"""Reads on tenants, for other apps: the tenant row itself (locked, for writers that check a
quota) and the model class as a type. Outside this app, `tenants.models` is imported by nobody
(tests/test_architecture.py)."""

from __future__ import annotations

from typing import Any

from tenants.models import Tenant, TenantAPIKey

__all__ = ["Tenant", "tenant_api_key_usable", "tenant_find", "tenant_get", "tenant_locked"]


def tenant_get(*, tenant_id: Any) -> Tenant:
    return Tenant.objects.get(pk=tenant_id)


def tenant_locked(*, tenant_id: Any) -> Tenant:
    """The tenant's row, locked until the transaction ends (SELECT … FOR UPDATE): writes that
    check the tenant's quotas take it first, so that two of them cannot both pass the check."""
    return Tenant.objects.select_for_update().get(pk=tenant_id)


def tenant_find(*, name: str) -> Tenant | None:
    return Tenant.objects.filter(name=name).first()


def tenant_api_key_usable(*, key: str) -> bool:
    """The key (in clear) names an active, unexpired, unrevoked key."""
    return bool(TenantAPIKey.objects.is_valid(key))
