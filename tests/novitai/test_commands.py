"""tenant_create, tenant_key and bootstrap_demo print what scripts read."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tenants.models import Tenant, TenantAPIKey

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def parse(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.strip().splitlines())


def test_tenant_create_prints_key_and_secret_once() -> None:
    output = run("tenant_create", "initech")
    lines = output.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == ["api_key", "webhook_secret"]
    values = parse(output)
    assert TenantAPIKey.objects.is_valid(values["api_key"])
    secret = values["webhook_secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    tenant = Tenant.objects.get(name="initech")
    assert tenant.webhook_secret == secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {values['api_key']}")
    assert client.get("/api/v1/").status_code == 200


def test_tenant_create_refuses_a_duplicate() -> None:
    run("tenant_create", "initech")
    with pytest.raises(CommandError, match="already exists"):
        run("tenant_create", "initech")
    assert Tenant.objects.count() == 1


@pytest.mark.parametrize("name", ["Upper", "-dash", "x" * 64, "sp ace", ""])
def test_tenant_create_refuses_a_bad_name(name: str) -> None:
    with pytest.raises(CommandError):
        run("tenant_create", name)
    assert Tenant.objects.count() == 0


def test_tenant_key_prints_another_working_key() -> None:
    first = parse(run("tenant_create", "initech"))["api_key"]
    output = run("tenant_key", "initech")
    assert output.strip().startswith("api_key: ")
    second = parse(output)["api_key"]
    assert second != first
    assert TenantAPIKey.objects.get(prefix=second.split(".")[0]).tenant.name == "initech"


def test_tenant_key_for_an_unknown_tenant_fails() -> None:
    with pytest.raises(CommandError, match="No tenant"):
        run("tenant_key", "nobody")


def test_bootstrap_demo_is_repeatable() -> None:
    first = run("bootstrap_demo")
    second = run("bootstrap_demo")
    key_line = next(line for line in first.splitlines() if "api_key:" in line)
    assert key_line in second
    key = key_line.split("api_key:")[1].strip()
    assert TenantAPIKey.objects.get(prefix=key.split(".")[0]).tenant.name == "demo"
    assert get_user_model().objects.get(username="admin").is_superuser
    saved = json.loads((settings.VAR_DIR / "demo-credentials.json").read_text())
    assert saved["api_key"] == key
    assert f"admin / {saved['admin_password']}" in second


def test_secret_key_is_required_without_debug() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "SECRET_KEY")}
    env.update({"DEBUG": "false", "DJANGO_SETTINGS_MODULE": "novitai.settings"})
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=settings.BASE_DIR,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
