"""Structured logs carry the request id and context; secrets never reach them."""

from __future__ import annotations

import json
import logging

import pytest

from novitai.logging import (
    ContextFilter,
    JsonFormatter,
    RedactingFilter,
    log_context,
    redact,
    set_request_id,
)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer sk_live_abcdefgh12345678", "sk_live_abcdefgh12345678"),
        ("key AbCdEfGh.abcdefghijklmnopqrstuvwxyz012345 used", "abcdefghijklmnopqrstuvwxyz012345"),
        ("secret whsec_dGhpcyBpcyBhIHNlY3JldCBvZiAzMiBieXRlcyEhIQ== rotated", "dGhpcyBp"),
        ('{"password": "hunter2-hunter2"}', "hunter2-hunter2"),
        ("imageAuth='user:pa55word!'", "pa55word!"),
        ("https://x.test/?token=abc123secret&x=1", "abc123secret"),
        ("novita key sk_0123456789abcdef in text", "0123456789abcdef"),
    ],
)
def test_redact_removes_secrets(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[redacted]" in redact(text)


def test_redact_removes_the_configured_novita_key(settings) -> None:
    settings.NOVITA_API_KEY = "a-novita-key-of-unusual-shape"
    assert redact("calling with a-novita-key-of-unusual-shape now") == "calling with [redacted] now"


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("failed with Bearer topsecrettoken123")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("novitai.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_json_lines_carry_request_id_context_and_no_secrets() -> None:
    record = _record("create failed for %s", "Bearer topsecrettoken123", exc=True)
    set_request_id("req-42")
    try:
        with log_context(instance_id="i-1", job_id="j-1"):
            ContextFilter().filter(record)
        RedactingFilter().filter(record)
        line = JsonFormatter().format(record)
    finally:
        set_request_id(None)
    payload = json.loads(line)
    assert payload["request_id"] == "req-42"
    assert payload["instance_id"] == "i-1"
    assert payload["job_id"] == "j-1"
    assert payload["level"] == "WARNING"
    assert payload["message"] == "create failed for Bearer [redacted]"
    assert "ValueError" in payload["exception"]
    assert "topsecrettoken123" not in line


def test_context_is_dropped_after_the_block() -> None:
    with log_context(instance_id="i-1"):
        pass
    record = _record("plain")
    ContextFilter().filter(record)
    assert not hasattr(record, "instance_id")
    assert record.request_id == "-"  # type: ignore[attr-defined]
