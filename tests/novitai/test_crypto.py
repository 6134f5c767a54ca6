"""Secrets at rest: webhook secrets encrypted in their column with ENCRYPTION_KEYS, the keys
rotated by a command, plaintext rows encrypted by the data migrations, a key required in
production."""

from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from novitai.crypto import decrypt, is_token
from tenants.models import Tenant
from tenants.services import tenant_create, tenant_webhook_secret_rotate
from tests.novitai.test_https import production_env, setup_error

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def stored(table: str, column: str, pk: Any) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_webhook_secrets_are_encrypted_in_their_column() -> None:
    tenant, _ = tenant_create(name="acme")
    secret = tenant.webhook_secret
    assert secret.startswith("whsec_")
    raw = stored("tenants_tenant", "webhook_secret", tenant.pk.hex)
    assert secret not in raw
    assert raw.startswith("gAAAAA")  # a Fernet token
    assert decrypt(raw) == secret
    assert Tenant.objects.get(pk=tenant.pk).webhook_secret == secret
    rotated = tenant_webhook_secret_rotate(tenant=tenant)
    raw_previous = stored("tenants_tenant", "previous_webhook_secret", tenant.pk.hex)
    assert secret not in raw_previous
    assert decrypt(raw_previous) == secret
    assert Tenant.objects.get(pk=tenant.pk).webhook_secret == rotated.webhook_secret


@pytest.mark.django_db
def test_rotation_re_encrypts_everything_under_the_first_key(settings: Any) -> None:
    settings.ENCRYPTION_KEYS = [OLD]
    secrets = {t.pk: t.webhook_secret for t in (tenant_create(name=n)[0] for n in ("a", "b"))}
    settings.ENCRYPTION_KEYS = [NEW, OLD]
    out = io.StringIO()
    call_command("encryption_rotate", stdout=out)
    assert out.getvalue().splitlines() == [
        "tenants_tenant.webhook_secret: 2 re-encrypted",
        "tenants_tenant.previous_webhook_secret: 0 re-encrypted",
        "catalog_template.envs: 0 re-encrypted",
        "instances_instance.envs: 0 re-encrypted",
        "2 value(s) re-encrypted under the first key",
    ]
    settings.ENCRYPTION_KEYS = [NEW]  # the old key dropped: everything still reads
    for pk, secret in secrets.items():
        assert Tenant.objects.get(pk=pk).webhook_secret == secret
        raw = stored("tenants_tenant", "webhook_secret", pk.hex)
        assert Fernet(NEW.encode()).decrypt(raw.encode()).decode() == secret


@pytest.mark.django_db
def test_rotation_reports_values_no_key_decrypts(settings: Any) -> None:
    settings.ENCRYPTION_KEYS = [OLD]
    tenant_create(name="acme")
    settings.ENCRYPTION_KEYS = [NEW]  # OLD dropped too early
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("encryption_rotate", stdout=out)
    assert "tenants_tenant.webhook_secret: 0 re-encrypted, 1 not decrypted by any key" in (
        out.getvalue().splitlines()
    )
    assert str(raised.value) == (
        "1 value(s) are not decrypted by any key of ENCRYPTION_KEYS: keep the key they were "
        "encrypted with."
    )


def test_a_key_is_required_without_debug_and_must_be_a_fernet_key() -> None:
    assert setup_error(production_env(ENCRYPTION_KEYS="")).startswith(
        "django.core.exceptions.ImproperlyConfigured: ENCRYPTION_KEYS must be set when DEBUG is off"
    )
    assert setup_error(production_env(ENCRYPTION_KEYS=f"{NEW},not-a-key")) == (
        "django.core.exceptions.ImproperlyConfigured: ENCRYPTION_KEYS: every key is a Fernet key "
        "(url-safe base64 of 32 bytes)"
    )


# --- the data migrations: plaintext rows encrypted in place (and back) ---------------------------

TENANT_ID = "7f0c5a4e2b1d4c3a9e8f6a5b4c3d2e1f"
INSTANCE_ROW = {
    "live": ("5d9e1c8a2f4b4c6e9a1d7b3c2e1f0a9b", "ready"),
    "gone": ("6e0f2d9b3a5c4d7f8b2e8c4d3f2a1b0c", "terminated"),
}
ENVS = '[{"key": "HF_TOKEN", "value": "hf_plaintext_before"}]'


def migrate(executor: MigrationExecutor, *targets: tuple[str, str]) -> None:
    executor.loader.build_graph()
    executor.migrate(list(targets))


@pytest.mark.django_db(transaction=True)
def test_the_data_migrations_encrypt_existing_rows_and_purge_terminated_envs() -> None:
    executor = MigrationExecutor(connection)
    latest = [
        ("tenants", "0002_encrypt_webhook_secrets"),
        ("catalog", "0003_exited_local_storage_price"),
        ("instances", "0005_encrypt_envs"),
    ]
    before = [("tenants", "0001_initial"), ("instances", "0004_on_idle")]
    try:
        migrate(executor, *before)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO tenants_tenant (id, name, is_active, webhook_secret, "
                "previous_webhook_secret, created_at) VALUES (%s, %s, %s, %s, %s, "
                "CURRENT_TIMESTAMP)",
                [TENANT_ID, "legacy", True, "whsec_plaintextbefore", ""],
            )
            for name, (pk, status) in INSTANCE_ROW.items():
                cursor.execute(
                    "INSERT INTO instances_instance (id, tenant_id, name, status, "
                    "failure_reason, failure_message, template_id, product_names, gpu_num, "
                    "rootfs_size, preferred_region, billing_mode, envs, health_check, "
                    "webhook_url, on_preempt, on_idle, recoveries, novita_name, "
                    "novita_instance_id, novita_product_id, product_name, region, cluster_id, "
                    "offers_tried, upstream_status, endpoints, created_at, updated_at) VALUES "
                    "(%s, %s, %s, %s, '', '', '212', '[]', 1, 10, '', 'on_demand', %s, '{}', "
                    "'', 'notify', 'stop', 0, %s, '', '', '', '', '', '[]', '', '[]', "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                    [pk, TENANT_ID, name, status, ENVS, f"novitai-{name}"],
                )
        migrate(executor, *latest)
        raw_secret = stored("tenants_tenant", "webhook_secret", TENANT_ID)
        assert is_token(raw_secret)
        assert decrypt(raw_secret) == "whsec_plaintextbefore"
        assert stored("tenants_tenant", "previous_webhook_secret", TENANT_ID) == ""
        live = stored("instances_instance", "envs", INSTANCE_ROW["live"][0])
        gone = stored("instances_instance", "envs", INSTANCE_ROW["gone"][0])
        assert "hf_plaintext_before" not in live
        assert decrypt(live).replace(" ", "") == ENVS.replace(" ", "")
        assert decrypt(gone) == "[]"  # terminated: purged, the record kept
        # And back: the reverse migrations decrypt.
        migrate(executor, *before)
        assert stored("tenants_tenant", "webhook_secret", TENANT_ID) == "whsec_plaintextbefore"
        assert "hf_plaintext_before" in stored(
            "instances_instance", "envs", INSTANCE_ROW["live"][0]
        )
    finally:
        executor = MigrationExecutor(connection)
        migrate(executor, *executor.loader.graph.leaf_nodes())  # every app as the suite has it
