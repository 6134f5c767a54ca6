"""Secrets at rest: encrypted columns, with keys from the environment that can be rotated.

ENCRYPTION_KEYS holds one or more Fernet keys (AES-128-CBC with HMAC-SHA256), comma-separated:
the first encrypts, every one decrypts (MultiFernet). To rotate, put a new key first, run
`manage.py encryption_rotate` (every value re-encrypted under the first key), then drop the old
key. Required when DEBUG is off; with DEBUG and in the tests a key derived from SECRET_KEY is
used (development only, see settings).

`EncryptedTextField` and `EncryptedJSONField` hold the value in clear in Python and a Fernet
token in the column: `tenant.webhook_secret` is the secret, `tenants_tenant.webhook_secret` a
token. A token differs at every write, so these columns cannot be filtered on. The empty string
and NULL are stored as they are (nothing to hide).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper


class UndecryptableValue(Exception):
    """No key of ENCRYPTION_KEYS decrypts a stored value (a key removed too early?)."""


@functools.lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _multifernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(text: str) -> str:
    return fernet().encrypt(text.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableValue(
            "a stored value is not decrypted by any key of ENCRYPTION_KEYS"
        ) from None


def is_token(value: str) -> bool:
    """A value some key of ENCRYPTION_KEYS decrypts."""
    try:
        fernet().decrypt(value.encode())
    except InvalidToken:
        return False
    return True


def rotate(token: str) -> str:
    """The same value encrypted under the first key."""
    try:
        return fernet().rotate(token.encode()).decode("ascii")
    except InvalidToken:
        raise UndecryptableValue(
            "a stored value is not decrypted by any key of ENCRYPTION_KEYS"
        ) from None


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- fields ------------------------------------------------------------------------------------


class EncryptedTextField(models.TextField):
    """Text, encrypted in its column."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return decrypt(value) if value else value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return encrypt(value) if value else value


class EncryptedJSONField(models.TextField):
    """JSON data ([{"key", "value"}], …), encrypted as a whole in a text column."""

    # For django-stubs: the Python value is JSON data, not the column's str.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        return json.loads(decrypt(value)) if value else value

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else encrypt(json_text(value))

    def to_python(self, value: Any) -> Any:
        # TextField's would turn a list into its str(); the value is JSON data already.
        return value

    def value_to_string(self, obj: models.Model) -> str:
        return json_text(self.value_from_object(obj))


# --- rewriting the stored values (the data migrations, the rotation command) --------------------


@dataclass(frozen=True)
class Column:
    table: str
    pk: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.table}.{self.name}"


def encrypted_columns() -> list[Column]:
    """Every column of an Encrypted*Field, of every installed model."""
    from django.apps import apps

    return [
        Column(model._meta.db_table, str(model._meta.pk.column), str(field.column))
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField | EncryptedJSONField) and model._meta.pk
    ]


@dataclass
class Rewritten:
    rewritten: int = 0
    unchanged: int = 0
    raced: int = 0  # changed by someone else between the read and the write: left alone


def column_rewrite(
    connection: BaseDatabaseWrapper,
    column: Column,
    transform: Callable[[str], str | None],
    *,
    batch: int = 500,
) -> Rewritten:
    """Writes `transform(stored)` over every non-empty stored value of `column` (None: leave it),
    each by a conditional UPDATE (`WHERE <column> = <the value read>`): a row written meanwhile
    is counted as raced, not overwritten."""
    quote = connection.ops.quote_name
    table, pk, name = quote(column.table), quote(column.pk), quote(column.name)
    result = Rewritten()
    with connection.cursor() as cursor:
        # Identifiers from the models' options, every value a parameter.
        cursor.execute(
            f"SELECT {pk}, {name} FROM {table} WHERE {name} IS NOT NULL AND {name} <> ''"  # noqa: S608
        )
        rows: Iterable[tuple[Any, str]] = cursor.fetchall()
    for start in range(0, len(rows := list(rows)), batch):
        with connection.cursor() as cursor:
            for row_pk, stored in rows[start : start + batch]:
                new = transform(stored)
                if new is None or new == stored:
                    result.unchanged += 1
                    continue
                cursor.execute(
                    f"UPDATE {table} SET {name} = %s WHERE {pk} = %s AND {name} = %s",  # noqa: S608
                    [new, row_pk, stored],
                )
                if cursor.rowcount:
                    result.rewritten += 1
                else:
                    result.raced += 1
    return result


def encrypt_if_plain(stored: str) -> str | None:
    """For a data migration: a plaintext value encrypted, a token left as it is."""
    return None if is_token(stored) else encrypt(stored)


def decrypt_if_token(stored: str) -> str | None:
    """For a data migration's reverse: back to plaintext."""
    return decrypt(stored) if is_token(stored) else None


def encrypting_migration(
    table: str, columns: Iterable[str], *, pk: str = "id"
) -> tuple[Callable[[Any, Any], None], Callable[[Any, Any], None]]:
    """RunPython's forward and reverse for the migration that turns plaintext `columns` into
    encrypted ones: encrypt in place (what is encrypted already is left), and decrypt back."""
    names = list(columns)

    def forward(apps: Any, schema_editor: Any) -> None:
        for name in names:
            column_rewrite(schema_editor.connection, Column(table, pk, name), encrypt_if_plain)

    def reverse(apps: Any, schema_editor: Any) -> None:
        for name in names:
            column_rewrite(schema_editor.connection, Column(table, pk, name), decrypt_if_token)

    return forward, reverse
