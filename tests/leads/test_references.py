"""The lead, identifier and membership references are checked by triggers (migration
0006), not foreign key constraints: the database still refuses every row a
foreign key would have refused, and holds referenced rows as a foreign key does."""

import threading

import pytest
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction

from leads.models import Lead, LeadIdentifier, LeadList, ListMembership
from leads.services import lead_delete, lead_import, lead_list_delete
from tuco.models import Workspace

MISSING = "f" * 24


@pytest.fixture
def lead(acme):
    lead_list = LeadList.objects.create(workspace=acme, name="Refs")
    result = lead_import(workspace=acme, rows=[{"phone": "+12025550100"}], lead_list=lead_list)
    return Lead.objects.get(pk=result.lead_ids[0])


def _execute(sql, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
class TestRowsMustReferToExistingRows:
    def test_lead_in_a_missing_workspace(self, acme):
        with pytest.raises(IntegrityError), transaction.atomic():
            Lead.objects.create(workspace_id=MISSING, phone="+12025550101")

    def test_identifier_of_a_missing_lead(self, acme):
        with pytest.raises(IntegrityError), transaction.atomic():
            LeadIdentifier.objects.create(
                workspace=acme, value="+12025550102", lead_id=MISSING, field="phone"
            )

    def test_membership_of_a_missing_lead_or_list(self, acme, lead):
        lead_list = LeadList.objects.create(workspace=acme, name="Other")
        with pytest.raises(IntegrityError), transaction.atomic():
            ListMembership.objects.create(lead_list=lead_list, lead_id=MISSING)
        with pytest.raises(IntegrityError), transaction.atomic():
            ListMembership.objects.create(lead_list_id=MISSING, lead=lead)

    def test_one_missing_row_fails_a_bulk_insert(self, acme, lead):
        lead_list = LeadList.objects.create(workspace=acme, name="Bulk")
        others = [Lead(workspace=acme, phone=f"+1202555{n:04d}") for n in range(200, 210)]
        Lead.objects.bulk_create(others)
        rows = [ListMembership(lead_list=lead_list, lead=other) for other in others]
        rows.append(ListMembership(lead_list=lead_list, lead_id=MISSING))
        with pytest.raises(IntegrityError), transaction.atomic():
            ListMembership.objects.bulk_create(rows)
        assert not ListMembership.objects.filter(lead_list=lead_list).exists()

    def test_pointing_a_row_at_a_missing_one(self, acme, lead):
        membership = ListMembership.objects.get(lead=lead)
        with pytest.raises(IntegrityError), transaction.atomic():
            ListMembership.objects.filter(pk=membership.pk).update(lead_id=MISSING)
        with pytest.raises(IntegrityError), transaction.atomic():
            Lead.objects.filter(pk=lead.pk).update(workspace_id=MISSING)

    def test_saving_a_lead_whose_references_stay_put(self, acme, lead):
        lead.first_name = "Ada"
        lead.save()
        assert Lead.objects.get(pk=lead.pk).first_name == "Ada"


# SQLite checks the rows added only (see leads/migrations/0006_reference_triggers.py).
postgres_only = pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="SQLite checks the rows added only"
)


@pytest.mark.django_db
class TestReferencedRowsCannotGoWhileReferred:
    @postgres_only
    def test_deleting_a_lead_that_still_has_identifiers_or_memberships(self, lead):
        with pytest.raises(IntegrityError):
            _execute("DELETE FROM leads_lead WHERE id = %s", [lead.pk])
        _execute("DELETE FROM leads_leadidentifier WHERE lead_id = %s", [lead.pk])
        with pytest.raises(IntegrityError):
            _execute("DELETE FROM leads_lead WHERE id = %s", [lead.pk])
        assert Lead.objects.filter(pk=lead.pk).exists()

    @postgres_only
    def test_deleting_a_list_or_workspace_that_still_has_rows(self, acme, lead):
        lead_list = ListMembership.objects.get(lead=lead).lead_list
        with pytest.raises(IntegrityError):
            _execute("DELETE FROM leads_leadlist WHERE id = %s", [lead_list.pk])
        with pytest.raises(IntegrityError):
            _execute("DELETE FROM leads_lead WHERE workspace_id = %s", [acme.pk])

    @postgres_only
    def test_changing_a_referenced_key(self, lead):
        with pytest.raises(IntegrityError):
            _execute("UPDATE leads_lead SET id = %s WHERE id = %s", [MISSING, lead.pk])

    def test_the_services_and_cascades_still_delete(self, acme, lead):
        second = lead_import(workspace=acme, rows=[{"phone": "+12025550103"}])
        assert lead_delete(workspace=acme, lead_ids=[lead.pk]) == 1
        lead_list = LeadList.objects.get(pk=second.list_id)
        assert lead_list_delete(workspace=acme, lead_list=lead_list, delete_leads=True) == 1
        lead_import(workspace=acme, rows=[{"email": "a@example.com"}])
        Workspace.objects.filter(pk=acme.pk).delete()
        assert not Lead.objects.exists()
        assert not LeadIdentifier.objects.exists()
        assert not ListMembership.objects.exists()


@pytest.mark.django_db
@pytest.mark.skipif(not settings.IS_POSTGRES, reason="TRUNCATE is Postgres only")
def test_truncating_a_referenced_table_alone(lead):
    _execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending foreign key checks
    with pytest.raises(IntegrityError):
        _execute("TRUNCATE leads_leadlist, campaigns_campaign CASCADE")
    assert ListMembership.objects.filter(lead=lead).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.IS_POSTGRES, reason="needs Postgres (set DATABASE_URL)")
def test_rows_added_hold_what_they_refer_to_until_commit(acme):
    """As a foreign key check does: a transaction that adds a membership of an
    existing lead keeps the lead (FOR KEY SHARE) until it ends, so a concurrent
    delete waits, then fails on the new membership."""
    lead_list = LeadList.objects.create(workspace=acme, name="Held")
    lead = Lead.objects.get(
        pk=lead_import(workspace=acme, rows=[{"phone": "+12025550104"}]).lead_ids[0]
    )
    LeadIdentifier.objects.filter(lead=lead).delete()
    ListMembership.objects.filter(lead=lead).delete()
    added, release = threading.Event(), threading.Event()
    outcome = {}

    def importer():
        try:
            with transaction.atomic():
                ListMembership.objects.create(lead_list=lead_list, lead=lead)
                added.set()
                release.wait(10)
        finally:
            connection.close()

    def deleter():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '300ms'")
                cursor.execute("DELETE FROM leads_lead WHERE id = %s", [lead.pk])
        except Exception as exc:  # noqa: BLE001 - the test looks at what it got
            outcome["error"] = exc
        finally:
            connection.close()

    first = threading.Thread(target=importer)
    first.start()
    assert added.wait(10)
    second = threading.Thread(target=deleter)
    second.start()
    second.join()
    release.set()
    first.join()
    assert isinstance(outcome.get("error"), OperationalError)  # lock timeout: held
    with pytest.raises(IntegrityError):  # and once committed, the membership refers to it
        _execute("DELETE FROM leads_lead WHERE id = %s", [lead.pk])
