import datetime

import django.db.models.deletion
from django.db import migrations, models

# Columns whose own index goes (the composite or Meta index that leads with the
# column serves its lookups), with the varchar_pattern_ops copy Postgres gets
# for indexed CharFields; "id" keeps its primary key and loses only the copy.
UNINDEXED = ("lead_id", "line_id", "workspace_id")


def _names(schema_editor, table, column):
    plain = schema_editor._create_index_name(table, [column])
    pattern = schema_editor._create_index_name(table, [column], suffix="_like")
    return ([] if column == "id" else [plain]), pattern


def drop_column_indexes(apps, schema_editor):
    """Drop the indexes only: altering the fields' db_index through the schema
    editor would also drop and re-validate their foreign keys."""
    table = apps.get_model("messaging", "Message")._meta.db_table
    quote = schema_editor.quote_name
    for column in (*UNINDEXED, "id"):
        plain, pattern = _names(schema_editor, table, column)
        for name in [*plain, pattern]:
            schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")


def create_column_indexes(apps, schema_editor):
    table = apps.get_model("messaging", "Message")._meta.db_table
    quote = schema_editor.quote_name
    postgres = schema_editor.connection.vendor == "postgresql"
    for column in (*UNINDEXED, "id"):
        plain, pattern = _names(schema_editor, table, column)
        for name in plain:
            schema_editor.execute(f"CREATE INDEX {quote(name)} ON {quote(table)} ({quote(column)})")
        if postgres:
            schema_editor.execute(
                f"CREATE INDEX {quote(pattern)} ON {quote(table)} "
                f"({quote(column)} varchar_pattern_ops)"
            )


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0005_import_constraints"),
        ("lines", "0001_initial"),
        ("messaging", "0001_initial"),
        ("tuco", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="message", name="message_due_waiting"),
        migrations.RemoveIndex(model_name="message", name="message_external_id"),
        migrations.RemoveIndex(model_name="message", name="message_status_inflight"),
        migrations.AlterField(
            model_name="message",
            name="campaign_id",
            field=models.CharField(blank=True, default="", max_length=24),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="lead",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="messages",
                        to="leads.lead",
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="line",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="messages",
                        to="lines.line",
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="workspace",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages",
                        to="tuco.workspace",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_column_indexes, create_column_indexes),
            ],
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(
                    ("due_at__lt", datetime.datetime(9000, 1, 1, 0, 0, tzinfo=datetime.UTC)),
                    ("status__in", ["pending", "scheduled"]),
                ),
                fields=["due_at"],
                name="message_due_waiting",
            ),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["line"], name="message_line"),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("external_message_id", ""), _negated=True),
                fields=["external_message_id"],
                name="message_external_id",
            ),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("sending_started_at__isnull", False)),
                fields=["status", "sending_started_at"],
                name="message_status_inflight",
            ),
        ),
    ]
