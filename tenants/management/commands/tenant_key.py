from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from novitai.errors import ServiceError
from tenants.services import tenant_api_key_create, tenant_get_by_name


class Command(BaseCommand):
    help = "Create another API key for a tenant; prints it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--label", default="cli", help="A name for the key (admin only).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get_by_name(name=options["name"])
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"api_key: {tenant_api_key_create(tenant=tenant, name=options['label'])}")
