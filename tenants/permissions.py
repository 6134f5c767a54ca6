from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenants.authentication import TenantPrincipal


def is_staff_user(user: Any) -> bool:
    return bool(
        user and not isinstance(user, TenantPrincipal) and user.is_authenticated and user.is_staff
    )


class IsTenantOrStaff(BasePermission):
    """A tenant's API key, or a staff session (who sees every tenant)."""

    message = "A tenant API key or a staff session is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, TenantPrincipal) or is_staff_user(request.user)


class IsStaff(BasePermission):
    message = "This operation is for staff only."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff_user(request.user)
