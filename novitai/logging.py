"""Structured logging: request id and context on every record, secrets redacted, JSON output."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)


def get_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> None:
    _request_id.set(value)


@contextlib.contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Add fields (instance_id, job_id, …) to every record logged inside the block."""
    token = _context.set({**(_context.get() or {}), **values})
    try:
        yield
    finally:
        _context.reset(token)


# --- redaction ------------------------------------------------------------------------------

REDACTED = "[redacted]"
# A URL's password: postgres://user:password@host, redis://:password@host. It is what lies
# between the userinfo's first ':' and the '@' (it may hold '/' or ':' when not percent-encoded).
URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s\"'<>]*:)[^@\s\"'<>]+@")

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)(bearer\s+)[^\s'\"]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)(api-key\s+)[^\s'\"]+"), rf"\1{REDACTED}"),
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), f"whsec_{REDACTED}"),
    # djangorestframework-api-key keys: <8-char prefix>.<32-char secret>
    (re.compile(r"\b([A-Za-z0-9]{8})\.[A-Za-z0-9]{32}\b"), rf"\1.{REDACTED}"),
    (re.compile(r"\bsk_[A-Za-z0-9_\-]{8,}"), f"sk_{REDACTED}"),
    (URL_PASSWORD, rf"\1{REDACTED}@"),
    (
        re.compile(
            r"(?i)([\"']?(?:password|passwd|secret|token|imageAuth|api_key)[\"']?\s*[:=]\s*)"
            r"([\"'])(?:(?!\2).)*\2"
        ),
        rf"\1\2{REDACTED}\2",
    ),
    (
        re.compile(r"(?i)((?:password|passwd|secret|token|api_key)=)[^&\s'\"]+"),
        rf"\1{REDACTED}",
    ),
]


def _literal_secrets() -> list[str]:
    """Configured secrets that are redacted wherever they appear verbatim."""
    try:
        from django.conf import settings

        values = [
            getattr(settings, "NOVITA_API_KEY", ""),
            getattr(settings, "SECRET_KEY", ""),
            *getattr(settings, "ENCRYPTION_KEYS", []),
        ]
    except Exception:  # settings not configured (the sandbox runs without Django)
        return []
    return [v for v in values if v and len(v) >= 8]


def redact(text: str) -> str:
    for secret in _literal_secrets():
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Renders the message, redacts it, and redacts the traceback too."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is still logged, unformatted
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get() or "-"
        for key, value in (_context.get() or {}).items():
            setattr(record, key, value)
        return True


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        return json.dumps(payload, default=str)
