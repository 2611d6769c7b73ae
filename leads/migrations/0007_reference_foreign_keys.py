"""Lead, identifier and membership references become foreign key constraints.

Databases migrated through the former 0006 check four of these references with
statement triggers (two plpgsql functions on Postgres, insert/update triggers on
SQLite). They are dropped by name, IF EXISTS, so this runs the same on those
databases and on one migrated from scratch, where 0006 created nothing; then the
fields are altered and Django creates the constraints, including the one of
LeadIdentifier.workspace, which had no check before.

Backwards, the constraints are dropped and the triggers are not recreated: the
database returns to the state 0006 now leaves, the same for every database.
"""

import django.db.models.deletion
from django.db import migrations, models

# (child table, parent table, name) of the references 0006 used to check.
FORMER_CHECKS = (
    ("leads_lead", "tuco_workspace", "leads_lead_workspace_ref"),
    ("leads_leadidentifier", "leads_lead", "leads_leadidentifier_lead_ref"),
    ("leads_listmembership", "leads_lead", "leads_listmembership_lead_ref"),
    ("leads_listmembership", "leads_leadlist", "leads_listmembership_list_ref"),
)


def drop_former_checks(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in ("postgresql", "sqlite"):
        return
    for child, parent, name in FORMER_CHECKS:
        for suffix, table in (
            ("insert", child),
            ("update", child),
            ("delete", parent),
            ("rekey", parent),
            ("truncate", parent),
        ):
            if vendor == "postgresql":
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}_{suffix} ON {table}")
            elif suffix in ("insert", "update"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}_{suffix}")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS leads_ref_rows_added()")
        schema_editor.execute("DROP FUNCTION IF EXISTS leads_ref_parent_removed()")


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0006_reference_triggers"),
        ("tuco", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(drop_former_checks, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="lead",
            name="workspace",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="leads",
                to="tuco.workspace",
            ),
        ),
        migrations.AlterField(
            model_name="leadidentifier",
            name="workspace",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tuco.workspace",
            ),
        ),
        migrations.AlterField(
            model_name="leadidentifier",
            name="lead",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="identifier_rows",
                to="leads.lead",
            ),
        ),
        migrations.AlterField(
            model_name="listmembership",
            name="lead",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memberships",
                to="leads.lead",
            ),
        ),
        migrations.AlterField(
            model_name="listmembership",
            name="lead_list",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memberships",
                to="leads.leadlist",
            ),
        ),
    ]
