from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from novitai.errors import ServiceError
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant; prints its API key and webhook signing secret once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant, key = tenant_create(name=options["name"])
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"api_key: {key}")
        self.stdout.write(f"webhook_secret: {tenant.webhook_secret}")
