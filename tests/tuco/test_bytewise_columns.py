"""Object ids and lead identifiers are compared byte for byte: on Postgres their
columns, and every foreign key column pointing at one, have the "C" collation; on
SQLite they are plain columns. Look-ups and joins across them work on both."""

import pytest
from django.apps import apps
from django.db import connection

from leads.models import Lead, LeadIdentifier
from leads.services import lead_import
from messaging.models import Message
from tuco.fields import BytewiseCharField

pytestmark = pytest.mark.django_db


def _bytewise_columns():
    """(table, column) of every BytewiseCharField and every foreign key to one."""
    columns = set()
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            target = field.target_field if field.is_relation else field
            if isinstance(target, BytewiseCharField):
                columns.add((model._meta.db_table, field.column))
    return columns


def _collations(columns):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        )
        found = {(table, column): collation for table, column, collation in cursor.fetchall()}
    return {column: found[column] for column in columns}


def test_ids_identifiers_and_the_keys_to_them_are_bytewise(settings):
    columns = _bytewise_columns()
    assert ("leads_lead", "id") in columns
    assert ("leads_leadidentifier", "value") in columns
    assert ("leads_leadidentifier", "lead_id") in columns
    assert ("messaging_message", "workspace_id") in columns
    if settings.IS_POSTGRES:
        assert set(_collations(columns).values()) == {"C"}
    else:
        # SQLite compares text byte for byte already; it has no "C" collation.
        parameters = Lead._meta.pk.db_parameters(connection)
        assert parameters["type"] == "varchar(24)"
        assert not parameters.get("collation")


def test_look_ups_and_joins_across_bytewise_columns(acme):
    result = lead_import(
        workspace=acme, rows=[{"firstName": "Ann", "phone": "+14155550102"}], collect_ids=True
    )
    (lead_id,) = result.lead_ids
    assert LeadIdentifier.objects.get(workspace=acme, value="+14155550102").lead_id == lead_id
    # A join from a default-collation column (the message's recipient) to a bytewise
    # one (the identifier's value), and from a foreign key to its target.
    Message.objects.create(workspace=acme, lead_id=lead_id, recipient_phone="+14155550102")
    joined = Lead.objects.filter(
        pk__in=LeadIdentifier.objects.filter(
            value__in=Message.objects.filter(workspace=acme).values("recipient_phone")
        ).values("lead_id"),
        workspace__name=acme.name,
    )
    assert list(joined.values_list("pk", flat=True)) == [lead_id]
