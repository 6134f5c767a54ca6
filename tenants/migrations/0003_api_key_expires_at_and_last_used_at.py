"""API keys: the library's `expiry_date` becomes `expires_at` (values kept), and `last_used_at`."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0002_encrypt_webhook_secrets'),
    ]

    operations = [
        migrations.RenameField(
            model_name='tenantapikey',
            old_name='expiry_date',
            new_name='expires_at',
        ),
        migrations.AlterField(
            model_name='tenantapikey',
            name='expires_at',
            field=models.DateTimeField(blank=True, help_text='The key is refused from then on (empty: never).', null=True),
        ),
        migrations.AddField(
            model_name='tenantapikey',
            name='last_used_at',
            field=models.DateTimeField(blank=True, editable=False, help_text='When the key last authenticated, to within API_KEY_LAST_USED_INTERVAL_SECONDS.', null=True),
        ),
    ]
