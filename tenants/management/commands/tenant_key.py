from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from novitai.errors import ServiceError
from tenants.services import tenant_api_key_create, tenant_get_by_name


class Command(BaseCommand):
    help = "Create another API key for a tenant; prints it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--label", default="cli", help="A name for the key (admin only).")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="The key is refused after this many days (default: never).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get_by_name(name=options["name"])
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be 1 or more.")
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None
        key = tenant_api_key_create(tenant=tenant, name=options["label"], expires_at=expires_at)
        self.stdout.write(f"api_key: {key}")
        if expires_at is not None:
            self.stdout.write(f"expires_at: {expires_at.isoformat()}")
