"""HTTPS hardening: env-driven, on by default without DEBUG, and `check --deploy` clean."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.test import Client

HARDENING = (
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "CSRF_TRUSTED_ORIGINS",
)


def production_env(**overrides: str) -> dict[str, str]:
    """The environment of a deployment: DEBUG off, a real secret key, nothing of pytest's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "DEBUG")}
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "novitai.example.com",
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DJANGO_SETTINGS_MODULE": "novitai.settings",
        }
    )
    env.update(overrides)
    return env


def settings_of(env: dict[str, str]) -> dict[str, Any]:
    code = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(HARDENING)!r}}}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def test_https_hardening_is_on_without_debug() -> None:
    assert settings_of(production_env()) == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "CSRF_TRUSTED_ORIGINS": [],
    }


def test_https_hardening_follows_the_environment() -> None:
    assert settings_of(
        production_env(
            SECURE_HTTPS="false",
            SESSION_COOKIE_SECURE="true",
            SECURE_HSTS_PRELOAD="true",
            SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
            CSRF_TRUSTED_ORIGINS="https://novitai.example.com,https://ops.example.com",
        )
    ) == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CSRF_TRUSTED_ORIGINS": ["https://novitai.example.com", "https://ops.example.com"],
    }
    assert settings_of(production_env(DEBUG="true")) == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "CSRF_TRUSTED_ORIGINS": [],
    }


def setup_error(env: dict[str, str]) -> str:
    """The last line of what django.setup() printed, failing, in that environment."""
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    return done.stderr.strip().splitlines()[-1]


def test_a_malformed_proxy_header_is_refused() -> None:
    assert setup_error(production_env(SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO")) == (
        "django.core.exceptions.ImproperlyConfigured: "
        "SECURE_PROXY_SSL_HEADER must be '<META name>,<value>'"
    )


def test_check_deploy_is_clean_with_production_settings() -> None:
    env = production_env(
        SECURE_HSTS_PRELOAD="true", SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "System check identified no issues (0 silenced).",
    ), done.stderr


@pytest.mark.django_db
def test_plain_http_is_redirected_except_probes(settings: Any, api_key: str) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client()
    response = client.get("/api/v1/", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert (response.status_code, response["Location"]) == (301, "https://testserver/api/v1/")
    assert client.get("/health/live").status_code == 200
    assert client.get("/metrics").status_code == 200
    proxied = client.get(
        "/api/v1/", HTTP_AUTHORIZATION=f"Bearer {api_key}", HTTP_X_FORWARDED_PROTO="https"
    )
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
