"""Leads refer to their workspace, identifiers to their lead and workspace, and
memberships to their lead and list through foreign keys: the database refuses a
row that points at a missing one, and a delete through Django cascades as each
field's on_delete says, on SQLite and Postgres alike."""

import pytest
from django.db import IntegrityError, connection, transaction

from leads.models import Lead, LeadIdentifier, LeadList, ListMembership
from leads.services import lead_import
from tuco.models import Workspace

MISSING = "f" * 24

# (model, field, referenced model)
REFERENCES = [
    (Lead, "workspace", Workspace),
    (LeadIdentifier, "workspace", Workspace),
    (LeadIdentifier, "lead", Lead),
    (ListMembership, "lead", Lead),
    (ListMembership, "lead_list", LeadList),
]


def _import(workspace, lead_list, *rows):
    return lead_import(workspace=workspace, rows=list(rows), lead_list=lead_list)


def _execute(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _counts(workspace):
    return (
        Lead.objects.filter(workspace=workspace).count(),
        LeadIdentifier.objects.filter(workspace=workspace).count(),
        ListMembership.objects.filter(lead_list__workspace=workspace).count(),
        LeadList.objects.filter(workspace=workspace).count(),
    )


@pytest.fixture
def imported(acme):
    """Two lists sharing a lead: the first list holds two leads, the second one."""
    first = LeadList.objects.create(workspace=acme, name="First")
    second = LeadList.objects.create(workspace=acme, name="Second")
    shared = _import(acme, first, {"phone": "+12025550100", "email": "a@example.com"})
    other = _import(acme, first, {"phone": "+12025550101"})
    _import(acme, second, {"phone": "+12025550100"})  # links the shared lead
    return {
        "first": first,
        "second": second,
        "shared": Lead.objects.get(pk=shared.lead_ids[0]),
        "other": Lead.objects.get(pk=other.lead_ids[0]),
    }


@pytest.mark.django_db
class TestDeletesCascade:
    def test_deleting_a_lead_removes_its_identifiers_and_memberships(self, acme, imported):
        shared = imported["shared"]
        shared.delete()
        assert not LeadIdentifier.objects.filter(lead_id=shared.pk).exists()
        assert not ListMembership.objects.filter(lead_id=shared.pk).exists()
        assert _counts(acme) == (1, 1, 1, 2)

    def test_deleting_a_list_removes_its_memberships_and_keeps_the_leads(self, acme, imported):
        imported["first"].delete()
        assert list(ListMembership.objects.values_list("lead_list_id", "lead_id")) == [
            (imported["second"].pk, imported["shared"].pk)
        ]
        assert _counts(acme) == (2, 3, 1, 1)

    def test_deleting_a_workspace_removes_everything_in_it(self, acme, imported, globex):
        other_list = LeadList.objects.create(workspace=globex, name="Globex's")
        _import(globex, other_list, {"phone": "+12025550100"})
        Workspace.objects.filter(pk=acme.pk).delete()
        assert _counts(acme) == (0, 0, 0, 0)
        assert _counts(globex) == (1, 1, 1, 1)


@pytest.mark.django_db(transaction=True)
class TestRowsMustReferToExistingRows:
    """Statements run in autocommit here, so each one's deferred checks run at its
    commit, where any other writer's would."""

    def test_an_identifier_of_a_missing_lead_or_workspace(self, acme, imported):
        insert = (
            "INSERT INTO leads_leadidentifier (workspace_id, value, lead_id, field) "
            "VALUES (%s, %s, %s, 'phone')"
        )
        with pytest.raises(IntegrityError):
            _execute(insert, [acme.pk, "+12025550102", MISSING])
        with pytest.raises(IntegrityError):
            _execute(insert, [MISSING, "+12025550102", imported["shared"].pk])
        assert not LeadIdentifier.objects.filter(value="+12025550102").exists()

    def test_a_membership_of_a_missing_lead_or_list(self, acme, imported):
        insert = (
            "INSERT INTO leads_listmembership (lead_list_id, lead_id, created_at) "
            "VALUES (%s, %s, CURRENT_TIMESTAMP)"
        )
        with pytest.raises(IntegrityError):
            _execute(insert, [imported["second"].pk, MISSING])
        with pytest.raises(IntegrityError):
            _execute(insert, [MISSING, imported["other"].pk])
        assert _counts(acme) == (2, 3, 3, 2)

    def test_a_lead_of_a_missing_workspace(self, acme):
        with pytest.raises(IntegrityError):
            Lead.objects.create(workspace_id=MISSING, phone="+12025550103")
        assert not Lead.objects.exists()

    def test_one_missing_row_fails_the_whole_bulk_insert(self, acme, imported):
        lead_list = LeadList.objects.create(workspace=acme, name="Bulk")
        rows = [ListMembership(lead_list=lead_list, lead=imported["other"])]
        rows.append(ListMembership(lead_list=lead_list, lead_id=MISSING))
        with pytest.raises(IntegrityError), transaction.atomic():
            ListMembership.objects.bulk_create(rows)
        assert not ListMembership.objects.filter(lead_list=lead_list).exists()

    def test_an_import_into_a_list_deleted_meanwhile_fails(self, acme):
        lead_list = LeadList.objects.create(workspace=acme, name="Gone")
        LeadList.objects.filter(pk=lead_list.pk).delete()
        with pytest.raises(IntegrityError):
            _import(acme, lead_list, {"phone": "+12025550104"})
        assert not Lead.objects.exists()
        assert not LeadIdentifier.objects.exists()

    def test_a_delete_around_the_orm_of_a_referenced_row_fails(self, acme, imported):
        lead = imported["shared"]
        with pytest.raises(IntegrityError):
            _execute("DELETE FROM leads_lead WHERE id = %s", [lead.pk])
        with pytest.raises(IntegrityError):
            _execute("DELETE FROM leads_leadlist WHERE id = %s", [imported["second"].pk])
        assert _counts(acme) == (2, 3, 3, 2)


@pytest.mark.django_db
def test_the_references_are_foreign_key_constraints():
    for model, name, parent in REFERENCES:
        column = model._meta.get_field(name).column
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
        foreign_keys = [
            c["foreign_key"]
            for c in constraints.values()
            if c["foreign_key"] and c["columns"] == [column]
        ]
        assert foreign_keys == [(parent._meta.db_table, "id")], (model, name)
