"""lead_import and the helpers other apps use for lead resolution."""

import pytest

from leads.models import Lead, LeadIdentifier, LeadList, ListMembership
from leads.services import (
    lead_find_by_identifiers,
    lead_get_or_create,
    lead_import,
    lead_merge_identifiers,
)
from tests.leads.conftest import snapshot
from tuco.errors import ValidationFailed


def _rows(n, start=0):
    return ({"phone": f"+1202555{i:04d}", "email": f"p{i}@example.com"} for i in range(start, n))


def test_results_do_not_depend_on_batch_size(acme):
    rows = list(_rows(25)) + list(_rows(30, 20)) + [{"email": "P3@example.com"}]
    results = []
    for size in (1, 4, 1000):
        Lead.objects.all().delete()
        result = lead_import(workspace=acme, rows=iter(rows), batch_size=size)
        results.append((result.saved_count, result.duplicate_count, result.total_processed))
        assert Lead.objects.count() == 30
    assert results == [(30, 6, 36)] * 3


def test_a_duplicate_rows_extra_identifier_still_counts_as_seen(acme):
    rows = [
        {"phone": "+12025550001"},
        {"phone": "+12025550001", "email": "extra@example.com"},
        {"email": "extra@example.com"},
    ]
    for size in (1, 10):
        Lead.objects.all().delete()
        result = lead_import(workspace=acme, rows=rows, batch_size=size)
        assert (result.saved_count, result.duplicate_count, result.linked_count) == (1, 2, 0)


def test_repeated_identifiers_on_one_lead_are_stored_once(acme):
    result = lead_import(
        workspace=acme,
        rows=[{"phone": "202-555-0001", "altPhone1": "+12025550001", "altPhone2": "2025550002"}],
    )
    lead = Lead.objects.get(pk=result.lead_ids[0])
    assert (lead.phone, lead.alt_phone1, lead.alt_phone2) == ("+12025550001", "", "+12025550002")
    assert LeadIdentifier.objects.filter(lead=lead).count() == 2


def test_skip_invalid_reports_rows_and_saves_the_rest(acme):
    rows = [{"phone": "+12025550001"}, {"phone": "nope", "_line": 3}, {"email": "bad"}]
    result = lead_import(workspace=acme, rows=rows, atomic=False, skip_invalid=True)
    assert (result.saved_count, result.invalid_count, result.total_processed) == (1, 2, 1)
    assert [(e.index, e.field, e.line) for e in result.errors] == [
        (1, "phone", 3),
        (2, "email", None),
    ]


def test_atomic_import_saves_nothing_when_a_later_batch_is_invalid(acme):
    lead_import(workspace=acme, rows=[{"phone": "+12025559999"}])
    before = snapshot()
    rows = [*_rows(10), {"phone": "+1 555 555 5555"}]
    with pytest.raises(ValidationFailed, match=r"leads\[10\]\.phone: Invalid phone number"):
        lead_import(workspace=acme, rows=rows, batch_size=3)
    assert snapshot() == before


def test_the_same_identifiers_in_two_workspaces_are_two_leads(acme, globex):
    lead_import(workspace=acme, rows=[{"phone": "+12025550001"}])
    result = lead_import(workspace=globex, rows=[{"phone": "+12025550001"}])
    assert result.saved_count == 1
    assert Lead.objects.filter(phone="+12025550001").count() == 2


def test_a_foreign_list_is_refused(acme, globex):
    theirs = LeadList.objects.create(workspace=globex, name="Theirs")
    with pytest.raises(ValidationFailed.__mro__[1]):
        lead_import(workspace=acme, rows=[{"phone": "+12025550001"}], lead_list=theirs)
    assert Lead.objects.count() == 0


def test_find_by_identifiers_normalizes_and_prefers_phones(acme, globex):
    lead_import(workspace=acme, rows=[{"phone": "+12025550001"}, {"email": "a@example.com"}])
    lead_import(workspace=globex, rows=[{"phone": "+12025550002"}])
    by_phone = lead_find_by_identifiers(
        workspace=acme, phones=["junk", "(202) 555-0001"], emails=["A@example.com"]
    )
    assert by_phone.phone == "+12025550001"
    by_email = lead_find_by_identifiers(workspace=acme, phones=[], emails=[" A@Example.com"])
    assert by_email.email == "a@example.com"
    assert lead_find_by_identifiers(workspace=acme, phones=["+12025550002"]) is None


def test_merge_identifiers_fills_empty_fields_only(acme):
    lead_import(
        workspace=acme,
        rows=[{"phone": "+12025550001", "altPhone1": "+12025550003"}, {"phone": "+12025550002"}],
    )
    lead = Lead.objects.get(phone="+12025550001")
    changed = lead_merge_identifiers(
        workspace=acme,
        lead=lead,
        fields={
            "altPhone1": "+12025550009",  # already set: kept
            "altPhone2": "202-555-0002",  # another lead's: skipped
            "altPhone3": "(202) 555-0004",
            "email": "New@Example.com",
            "altEmail1": "not an email",
        },
    )
    assert changed == ["alt_phone3", "email"]
    lead.refresh_from_db()
    assert (lead.alt_phone1, lead.alt_phone2, lead.alt_phone3, lead.email) == (
        "+12025550003",
        "",
        "+12025550004",
        "new@example.com",
    )
    assert lead_find_by_identifiers(workspace=acme, emails=["new@example.com"]) == lead


def test_get_or_create_reuses_a_match_without_changing_it(acme):
    lead, created = lead_get_or_create(
        workspace=acme, data={"phone": "+12025550001", "firstName": "A"}
    )
    assert created
    again, created = lead_get_or_create(
        workspace=acme, data={"phone": "202 555 0001", "firstName": "B"}
    )
    assert not created
    assert again == lead
    assert Lead.objects.get().first_name == "A"
    assert ListMembership.objects.count() == 1


AWKWARD = {
    "firstName": "Tab\there",
    "lastName": "back\\slash \\N",
    "companyName": "line\nbreak and\rreturn",
    "jobTitle": "Zoë ☃ \\t",
    "notes": "\\\\ two\t\\n",
    "source": "row\\source",
    "customFields": {"a\tb": "c\nd", "e": ["\\", None, True, 1.5], "f": "é\\N"},
    "optedOut": True,
    "phone": "(202) 555-0177",
    "altEmail1": "Alt@Example.com",
}
STORED = (
    "first_name", "last_name", "company_name", "job_title", "notes", "source",
    "custom_fields", "opted_out", "phone", "alt_email1", "email", "alt_phone1",
    "availability_status", "availability_checked_at", "replied_at",
)  # fmt: skip


def test_copy_rows_store_exactly_what_the_orm_writer_stores(acme, monkeypatch):
    """On Postgres rows travel as COPY text built while cleaning; the portable
    writer saves the same rows through the ORM. Both must store the same values."""
    from django.db import connection

    rows = [AWKWARD, {"email": "plain@example.com", "source": ""}, {"phone": "+442079460000"}]

    def import_and_read():
        Lead.objects.all().delete()
        result = lead_import(workspace=acme, rows=rows, source="api")
        leads = [Lead.objects.get(pk=lead_id) for lead_id in result.lead_ids]
        for lead in leads:
            assert lead.created_at == lead.updated_at
            assert lead.opted_out_at == (lead.created_at if lead.opted_out else None)
        return [tuple(getattr(lead, name) for name in STORED) for lead in leads]

    through_copy = import_and_read()
    with monkeypatch.context() as patch:
        patch.setattr(connection, "vendor", "portable")  # the ORM writer
        through_orm = import_and_read()
    assert through_copy == through_orm
    assert through_copy[0][:8] == (
        "Tab\there", "back\\slash \\N", "line\nbreak and\rreturn", "Zoë ☃ \\t",
        "\\\\ two\t\\n", "row\\source", AWKWARD["customFields"], True,
    )  # fmt: skip
    assert [row[5] for row in through_copy] == ["row\\source", "", "api"]


def test_identifiers_found_while_cleaning_match_the_fields():
    """The import takes a lead's identifiers from cleaning; they must be what
    _identifiers reads from the cleaned fields, repeats dropped as before."""
    from bench.lead_import import generate
    from leads.normalize import Normalizer
    from leads.services import IDENTIFIER_FIELDS, _clean_lead, _identifiers

    normalizer = Normalizer("+1")
    rows = list(generate(3000, seed=7)) + [
        {"email": "a@example.com", "phone": "(202) 555-0100"},
        {"email": "a@example.com", "altEmail1": "A@example.com "},
        {"altPhone2": "+12025550100", "phone": "202-555-0100", "email": "b@example.com"},
        {"altPhone1": "+12025550101", "alt_phone1": "", "phone": "+12025550102"},
        {"altPhone1": "+12025550103", "alt_phone1": ""},
        {"altPhone1": "+12025550104", "alt_phone1": "+12025550105"},
        {"altEmail3": "c@example.com", "altPhone3": "+12025550106"},
        {"phone": "+12025550107", "altPhone1": "+12025550107", "altPhone2": "+12025550108"},
    ]
    for index, row in enumerate(rows):
        fields, identifiers = _clean_lead(row, normalizer, index, False)
        assert identifiers == _identifiers(fields), row
        values = [value for _, value in identifiers]
        assert len(values) == len(set(values)), row
        kept = [name for name in IDENTIFIER_FIELDS if fields.get(name)]
        assert kept == [name for name, _ in identifiers], row
    assert _clean_lead(rows[-1], normalizer, 0, False)[1] == [
        ("phone", "+12025550107"),
        ("alt_phone2", "+12025550108"),
    ]
    # A value given twice stays in its first field (phone, altPhone1-3, email, ...).
    assert _clean_lead(rows[-6], normalizer, 0, False)[1] == [
        ("phone", "+12025550100"),
        ("email", "b@example.com"),
    ]


def test_an_import_runs_in_the_callers_thread_batch_after_batch(acme):
    """Each batch is cleaned, then written, in the caller's thread; the process's
    thread switching is left alone; an invalid row in a later batch stops the
    import at that row, in input order."""
    import sys
    import threading

    interval, threads = sys.getswitchinterval(), threading.active_count()
    seen = []
    result = lead_import(
        workspace=acme,
        rows=_rows(6),
        batch_size=2,
        progress=lambda result: seen.append(
            (result.saved_count, threading.active_count(), sys.getswitchinterval())
        ),
    )
    assert result.saved_count == 6
    assert seen == [(2, threads, interval), (4, threads, interval), (6, threads, interval)]
    rows = [{"phone": "+12025559001"}, {"phone": "+12025559002"}, {"phone": "12"}]
    with pytest.raises(ValidationFailed, match=r"leads\[2\]\.phone"):
        lead_import(workspace=acme, rows=rows, batch_size=2)
    assert not Lead.objects.filter(phone="+12025559001").exists()
