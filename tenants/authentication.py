"""`Authorization: Bearer <key>` authentication for tenants' API keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from novitai.client_ip import client_ip
from tenants.auth_throttle import auth_failure_record, auth_throttle_check
from tenants.keys import tenant_api_key_authenticate
from tenants.models import Tenant, TenantAPIKey


@dataclass(frozen=True)
class TenantPrincipal:
    """request.user for a request authenticated by a tenant's API key."""

    tenant: Tenant
    key_prefix: str

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def pk(self) -> str:
        return f"key:{self.key_prefix}"

    def __str__(self) -> str:
        return f"{self.tenant.name} ({self.key_prefix})"


class TenantKeyAuthentication(authentication.BaseAuthentication):
    """A tenant's key; a client address that keeps sending bad keys is throttled before its
    keys are looked at (auth_throttle)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TenantPrincipal, TenantAPIKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        address = client_ip(request)
        auth_throttle_check(address=address)
        try:
            return self._verify(header)
        except exceptions.AuthenticationFailed:
            auth_failure_record(address=address)
            raise

    def _verify(self, header: list[bytes]) -> tuple[TenantPrincipal, TenantAPIKey]:
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: 'Bearer <key>'.")
        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        api_key = tenant_api_key_authenticate(key=key)
        if api_key is None:
            # One answer for a wrong, revoked or expired key: none tells a guesser more.
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        return TenantPrincipal(tenant=api_key.tenant, key_prefix=api_key.prefix), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def request_tenant(request: Any) -> Tenant | None:
    """The tenant a request acts for; None for staff, who see every tenant."""
    user = request.user
    if isinstance(user, TenantPrincipal):
        return user.tenant
    return None
