"""Callers' env values encrypted at rest (ENCRYPTION_KEYS), and emptied for instances already
terminated (their records kept)."""

import novitai.crypto
from django.db import migrations

encrypt, decrypt = novitai.crypto.encrypting_migration("instances_instance", ["envs"])


def purge_terminated(apps, schema_editor):
    """A terminated instance keeps its record, not the caller's env values."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE instances_instance SET envs = %s WHERE status = %s", ["[]", "terminated"]
        )


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0004_on_idle'),
    ]

    operations = [
        migrations.AlterField(
            model_name='instance',
            name='envs',
            field=novitai.crypto.EncryptedJSONField(blank=True, default=list),
        ),
        migrations.RunPython(purge_terminated, migrations.RunPython.noop),
        migrations.RunPython(encrypt, decrypt),
    ]
