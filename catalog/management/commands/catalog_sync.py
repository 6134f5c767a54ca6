"""`manage.py catalog_sync`: refresh regions and products from Novita now, showing progress."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from catalog.services import catalog_sync


class Command(BaseCommand):
    help = "Sync Novita regions and GPU products into the catalog now."

    def handle(self, *args: Any, **options: Any) -> None:
        result = catalog_sync(progress=lambda line: self.stdout.write(line))
        if result.outcome == "failure":
            raise CommandError("catalog sync failed; the previous catalog stays in place")
        if result.outcome == "skipped":
            raise CommandError("another catalog sync is running; try again when it is done")
