"""Flower's configuration: `celery -A novitai flower` reads this file from its working directory.

Flower shows every task, the workers and the broker, and can revoke tasks and shut workers down,
so it requires basic auth: FLOWER_BASIC_AUTH="user:password" (a password of at least 12
characters; several pairs comma-separated), or --basic-auth. Without it Flower refuses to start,
unless DEBUG is on (local development). It listens on 127.0.0.1 unless FLOWER_ADDRESS or
--address says otherwise (the container listens on 0.0.0.0 and compose publishes it on loopback).

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


_reason = _problem([c for c in (_options.basic_auth or []) if c])
if _reason:
    _sys.exit(_reason)

address = _options.address or "127.0.0.1"
