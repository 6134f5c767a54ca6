"""The client's address, the same for every throttle and lockout (API keys, admin logins)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str:
    """REMOTE_ADDR; behind TRUSTED_PROXY_COUNT proxies, the address the outermost of them saw:
    X-Forwarded-For counted from the right, since each proxy appends the address it was reached
    from and anything left of those is the client's own claim (never trusted)."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    hops = [a.strip() for a in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    hops = [a for a in hops if a]
    return hops[-min(count, len(hops))] if hops else remote
