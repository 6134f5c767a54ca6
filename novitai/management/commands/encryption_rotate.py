"""Re-encrypt every encrypted value under the first key of ENCRYPTION_KEYS.

Rotation: put the new key first in ENCRYPTION_KEYS (the old one after it), restart, run this,
then drop the old key. Safe to run again or to interrupt: each value is rewritten by its own
conditional UPDATE, and until the old key is dropped either key decrypts it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from novitai.crypto import UndecryptableValue, column_rewrite, encrypted_columns, rotate


class Command(BaseCommand):
    help = "Re-encrypt every encrypted value under the first key of ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        total = undecryptable_total = 0
        for column in encrypted_columns():
            undecryptable = 0

            def rotated(stored: str) -> str | None:
                nonlocal undecryptable
                try:
                    return rotate(stored)
                except UndecryptableValue:
                    undecryptable += 1
                    return None

            result = column_rewrite(connection, column, rotated)
            total += result.rewritten
            undecryptable_total += undecryptable
            line = f"{column.label}: {result.rewritten} re-encrypted"
            if result.raced:
                line += f", {result.raced} changed meanwhile (left as written: run again)"
            if undecryptable:
                line += f", {undecryptable} not decrypted by any key"
            self.stdout.write(line)
        self.stdout.write(f"{total} value(s) re-encrypted under the first key")
        if undecryptable_total:
            raise CommandError(
                f"{undecryptable_total} value(s) are not decrypted by any key of ENCRYPTION_KEYS: "
                "keep the key they were encrypted with."
            )
