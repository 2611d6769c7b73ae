from datetime import UTC, datetime

from django.db import migrations, models
from django.db.models import F

# Held rows used to wait with this due date, one the dispatcher never reached.
OLD_HELD_DUE = datetime(9000, 1, 1, tzinfo=UTC)


def hold_rows_due_far_ahead(apps, schema_editor):
    Message = apps.get_model("messaging", "Message")
    Message.objects.filter(due_at__gte=OLD_HELD_DUE).update(held=True, due_at=F("created_at"))


def give_held_rows_the_far_due_date(apps, schema_editor):
    Message = apps.get_model("messaging", "Message")
    Message.objects.filter(held=True, status__in=["pending", "scheduled"]).update(
        due_at=OLD_HELD_DUE
    )


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0002_message_indexes_narrowed"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="message", name="message_due_waiting"),
        migrations.AddField(
            model_name="message",
            name="held",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(hold_rows_due_far_ahead, give_held_rows_the_far_due_date),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("held", False), ("status__in", ["pending", "scheduled"])),
                fields=["due_at"],
                name="message_due_waiting",
            ),
        ),
    ]
