"""Templates' env values encrypted at rest (ENCRYPTION_KEYS): existing rows in place."""

import novitai.crypto
from django.db import migrations

encrypt, decrypt = novitai.crypto.encrypting_migration("catalog_template", ["envs"])


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='template',
            name='envs',
            field=novitai.crypto.EncryptedJSONField(blank=True, default=list),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
