"""Flower's configuration: `celery -A novitai flower` reads this file from its working directory.

Flower shows every task, the workers and the broker, and can revoke tasks and shut workers down,
so it requires basic auth: FLOWER_BASIC_AUTH="user:password" (a password of at least 12
characters; several pairs comma-separated), or --basic-auth. Without it Flower refuses to start,
unless DEBUG is on (local development). It needs Redis as the broker, and says so otherwise. It
listens on 127.0.0.1 unless FLOWER_ADDRESS or --address says otherwise (the container listens on
0.0.0.0 and compose publishes it on loopback).

Tornado applies every name this file defines that is one of its options, so helpers are private.
"""

import sys as _sys

from django.conf import settings as _settings
from tornado.options import options as _options

_MIN_PASSWORD_LENGTH = 12


def _problem(credentials: list[str]) -> str | None:
    """Why Flower must not start with these credentials (None: it may)."""
    if not credentials and not _options.auth:
        if _settings.DEBUG:
            return None
        return "Flower needs authentication: set FLOWER_BASIC_AUTH=user:password (DEBUG is off)."
    for entry in credentials:
        user, _, password = entry.partition(":")
        if not user or len(password) < _MIN_PASSWORD_LENGTH:
            return (
                "FLOWER_BASIC_AUTH: each entry is user:password, the password at least "
                f"{_MIN_PASSWORD_LENGTH} characters."
            )
    return None


_NEEDS_REDIS = (
    "Flower needs Redis as the broker: kombu's SQLAlchemy transport (embedded mode without "
    "Redis) has no events, no broadcast and no queue lengths, so Flower would show no worker "
    "and no task. Set REDIS_URL, or let `make run` start its own Redis: "
)


def _broker_problem(broker_url: str) -> str | None:
    if broker_url.startswith("sqla+"):
        from novitai.embedded_redis import INSTALL_HINT

        return _NEEDS_REDIS + INSTALL_HINT + " (then restart `make run`)."
    return None


_reason = _problem([c for c in (_options.basic_auth or []) if c]) or _broker_problem(
    str(_settings.CELERY_BROKER_URL)
)
if _reason:
    _sys.exit(_reason)

address = _options.address or "127.0.0.1"
