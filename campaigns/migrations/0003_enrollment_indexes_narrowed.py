import django.db.models.deletion
from django.db import migrations, models

# Columns whose own index goes, with the varchar_pattern_ops copy Postgres gets
# for indexed CharFields: campaign_id is served by the (campaign, lead) and
# (campaign, state) indexes, the others by plain Meta indexes (no copy); "id"
# keeps its primary key and loses only the copy. workspace_id loses its index
# together with its constraint, through the schema editor.
UNINDEXED = ("campaign_id", "lead_id", "line_id")


def _names(schema_editor, table, column):
    plain = schema_editor._create_index_name(table, [column])
    pattern = schema_editor._create_index_name(table, [column], suffix="_like")
    return ([] if column == "id" else [plain]), pattern


def drop_column_indexes(apps, schema_editor):
    """Drop the indexes only: altering the fields' db_index through the schema
    editor would also drop and re-validate their foreign keys."""
    table = apps.get_model("campaigns", "Enrollment")._meta.db_table
    quote = schema_editor.quote_name
    for column in (*UNINDEXED, "id"):
        plain, pattern = _names(schema_editor, table, column)
        for name in [*plain, pattern]:
            schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")


def create_column_indexes(apps, schema_editor):
    table = apps.get_model("campaigns", "Enrollment")._meta.db_table
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
        ("campaigns", "0002_step_message_type_choices"),
        ("leads", "0005_import_constraints"),
        ("lines", "0001_initial"),
        ("tuco", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="enrollment",
                    name="campaign",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="enrollments",
                        to="campaigns.campaign",
                    ),
                ),
                migrations.AlterField(
                    model_name="enrollment",
                    name="lead",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="enrollments",
                        to="leads.lead",
                    ),
                ),
                migrations.AlterField(
                    model_name="enrollment",
                    name="line",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="lines.line",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_column_indexes, create_column_indexes),
            ],
        ),
        migrations.AlterField(
            model_name="enrollment",
            name="workspace",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tuco.workspace",
            ),
        ),
        migrations.AddIndex(
            model_name="enrollment",
            index=models.Index(fields=["line"], name="enrollment_line"),
        ),
        migrations.AddIndex(
            model_name="enrollment",
            index=models.Index(fields=["workspace"], name="enrollment_workspace"),
        ),
    ]
