"""Webhook signing secrets encrypted at rest (ENCRYPTION_KEYS): existing rows in place."""

import novitai.crypto
from django.db import migrations

encrypt, decrypt = novitai.crypto.encrypting_migration(
    "tenants_tenant", ["webhook_secret", "previous_webhook_secret"]
)


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='tenant',
            name='previous_webhook_secret',
            field=novitai.crypto.EncryptedTextField(blank=True, editable=False),
        ),
        migrations.AlterField(
            model_name='tenant',
            name='webhook_secret',
            field=novitai.crypto.EncryptedTextField(editable=False),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
