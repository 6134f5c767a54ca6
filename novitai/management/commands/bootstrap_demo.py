"""Ensure a demo tenant and an admin user exist, and print how to reach them (make run)."""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tenants.selectors import tenant_api_key_usable, tenant_find
from tenants.services import tenant_api_key_create, tenant_create

DEMO_TENANT = "demo"
ADMIN_USER = "admin"


class Command(BaseCommand):
    help = "Ensure a demo tenant and an admin user; print the API key and the admin login."

    def handle(self, *args: Any, **options: Any) -> None:
        # Local development only: the demo credentials are kept in a file under VAR_DIR so that
        # every `make run` prints the same ones.
        path = settings.VAR_DIR / "demo-credentials.json"
        saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

        tenant = tenant_find(name=DEMO_TENANT)
        key = saved.get("api_key", "")
        if tenant is None:
            tenant, key = tenant_create(name=DEMO_TENANT)
        elif not key or not tenant_api_key_usable(key=key):
            key = tenant_api_key_create(tenant=tenant, name="demo")

        user_model = get_user_model()
        password = saved.get("admin_password") or secrets.token_urlsafe(12)
        user = user_model.objects.filter(username=ADMIN_USER).first()
        if user is None:
            user_model.objects.create_superuser(ADMIN_USER, "admin@localhost", password)
        elif not user.check_password(password):
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save(update_fields=["password"])

        path.write_text(json.dumps({"api_key": key, "admin_password": password}))
        path.chmod(0o600)
        base = f"http://localhost:{os.environ.get('WEB_PORT', '8000')}"
        self.stdout.write("")
        self.stdout.write("  novitai demo credentials (local development only)")
        self.stdout.write(f"    tenant:          {DEMO_TENANT}")
        self.stdout.write(f"    api_key:         {key}")
        self.stdout.write(f"    webhook_secret:  {tenant.webhook_secret}")
        self.stdout.write(f"    admin login:     {ADMIN_USER} / {password}")
        self.stdout.write(f"    API:             {base}/api/v1/  (Bearer <api_key>)")
        self.stdout.write(f"    docs:            {base}/api/docs/")
        self.stdout.write(f"    admin:           {base}/admin/")
        self.stdout.write(f"    health:          {base}/health/ready")
        url = "" if base.endswith(":8000") else f"NOVITAI_URL={base} "
        cli = f"{url}NOVITAI_API_KEY=<api_key> .venv/bin/novitai list"
        self.stdout.write(f"    CLI:             {cli}")
        self.stdout.write("")
