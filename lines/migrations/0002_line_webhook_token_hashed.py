"""Callback tokens are kept encrypted and looked up by their hash; the registered
URL (which carried the token in clear) gives way to when it was registered."""

from django.db import migrations, models

import lines.models
import tuco.crypto


def encrypt_and_hash(apps, schema_editor):
    Line = apps.get_model("lines", "Line")
    for pk, token in Line.objects.values_list("pk", "webhook_token"):
        Line.objects.filter(pk=pk).update(
            webhook_token=tuco.crypto.encrypt(token),
            webhook_token_hash=lines.models.webhook_token_hash(token),
        )


class Migration(migrations.Migration):
    dependencies = [
        ("lines", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="line",
            name="webhook_token",
            field=models.TextField(),
        ),
        migrations.AddField(
            model_name="line",
            name="webhook_token_hash",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.RunPython(encrypt_and_hash, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="line",
            name="webhook_token",
            field=tuco.crypto.EncryptedTextField(default=lines.models.new_webhook_token),
        ),
        migrations.AlterField(
            model_name="line",
            name="webhook_token_hash",
            field=models.CharField(max_length=64, unique=True),
        ),
        migrations.RemoveField(
            model_name="line",
            name="webhook_registered_url",
        ),
        migrations.AddField(
            model_name="line",
            name="webhook_registered_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
