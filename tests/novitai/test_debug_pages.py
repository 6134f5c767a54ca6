"""Debug pages: `make run` listens on loopback, debug pages reach loopback clients naming an
allowed host only, and every URL's password is masked wherever a page or a log shows it."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from novitai.logging import RedactingFilter

# What runserver puts in request.META: the process environment, DATABASE_URL included.
ENVIRON: dict[str, Any] = {"DATABASE_URL": "postgres://novitai:canary-env-pw@db:5432/novitai"}
NETWORK = "203.0.113.9"


def procfile_web_argv(env: dict[str, str]) -> list[str]:
    """The web line of the Procfile as the shell honcho runs it expands it."""
    procfile = (Path(django_settings.BASE_DIR) / "Procfile").read_text().splitlines()
    command = next(line.split(":", 1)[1] for line in procfile if line.startswith("web:"))
    done = subprocess.run(
        ["sh", "-c", f'for arg in {command}; do printf "%s\\n" "$arg"; done'],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_make_run_listens_on_loopback_unless_told() -> None:
    assert procfile_web_argv({}) == [
        "python", "manage.py", "runserver", "127.0.0.1:8000", "--noreload"
    ]  # fmt: skip
    assert procfile_web_argv({"WEB_HOST": "0.0.0.0", "WEB_PORT": "9000"})[3] == "0.0.0.0:9000"


def get(path: str, *, remote: str, host: str = "localhost", **extra: Any) -> Any:
    return Client(raise_request_exception=False).get(
        path, HTTP_HOST=host, REMOTE_ADDR=remote, **ENVIRON, **extra
    )


def assert_plain(response: Any, status: int, reason: str) -> None:
    assert response.status_code == status
    assert response.content.decode() == (
        f"<!doctype html><title>{status} {reason}</title><h1>{reason} ({status})</h1>\n"
    )


@pytest.mark.parametrize("remote", [NETWORK, "127.0.0.1"])
def test_a_foreign_host_gets_no_debug_page(settings: Any, remote: str) -> None:
    """From the network, and from loopback too: a foreign Host there is a DNS-rebinding page
    in the developer's browser, which could read the answer."""
    settings.DEBUG = True
    response = get("/health/live", remote=remote, host="evil.example")
    assert_plain(response, 400, "Bad Request")
    assert b"canary-env-pw" not in response.content


@pytest.mark.django_db
def test_an_error_seen_from_the_network_gets_no_debug_page(settings: Any) -> None:
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.novitai.urls_for_tests"
    assert_plain(get("/_test/boom/", remote=NETWORK), 500, "Internal Server Error")
    assert_plain(get("/no-such-page/", remote=NETWORK), 404, "Not Found")


@pytest.mark.django_db
def test_loopback_gets_the_debug_page_with_every_url_password_masked(settings: Any) -> None:
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.novitai.urls_for_tests"
    settings.CELERY_BROKER_URL = "redis://:canary-setting-pw@redis:6379/0"
    for accept in ("text/html", "text/plain"):
        response = get("/_test/boom/", remote="127.0.0.1", HTTP_ACCEPT=accept)
        page = response.content.decode()
        assert response.status_code == 500
        assert "RuntimeError" in page  # the debug page
        assert "postgres://novitai:********@db:5432/novitai" in page  # request.META
        assert "redis://:********@redis:6379/0" in page  # the setting, the local variable
        assert "canary" not in page, accept
    assert get("/no-such-page/", remote="::1").content.count(b"Page not found") >= 1


def test_the_api_envelope_is_left_alone(settings: Any) -> None:
    settings.DEBUG = True
    response = get("/api/v1/", remote=NETWORK)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_logs_mask_url_passwords() -> None:
    record = logging.makeLogRecord(
        {"msg": "broker %s down", "args": ("sqla+postgresql://u:canary-log-pw@db/x",)}
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "broker sqla+postgresql://u:[redacted]@db/x down"
