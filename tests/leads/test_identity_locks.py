"""Identifier locks on real Postgres: new leads with different identifiers are
written side by side, the same identifier never makes two leads, and an import
still excludes every other identifier writer."""

import threading

import pytest
from django.conf import settings
from django.db import connection, transaction

from leads.models import Lead, LeadIdentifier, LeadList
from leads.services import lead_get_or_create, lead_import, lead_merge_identifiers
from tests import threads

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="needs Postgres (set DATABASE_URL)"),
]


def _hold_open(release: threading.Event, work):
    """Run `work` in a transaction of another connection and keep it open until
    `release` is set."""
    started = threading.Event()

    def run():
        try:
            with transaction.atomic():
                work()
                started.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    return thread


def _runs_within(seconds: float, work) -> bool:
    """Did `work` (on its own connection) finish within `seconds`?"""
    done = threading.Event()

    def run():
        try:
            work()
            done.set()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    finished = done.wait(seconds)
    return finished, thread


def _create(workspace, lead_list, phone):
    """A single-lead write, as a send to a new recipient makes it."""
    return lambda: lead_get_or_create(
        workspace=workspace, data={"phone": phone}, lead_list=lead_list
    )


def test_new_leads_with_other_identifiers_do_not_wait(acme):
    lead_list = LeadList.objects.create(workspace=acme, name="Quick")
    release = threading.Event()
    holder = _hold_open(release, _create(acme, lead_list, "+14155550100"))
    try:
        other, thread = _runs_within(
            5,
            _create(acme, lead_list, "+14155550102"),
        )
        assert other, "a lead with another phone waited for an unrelated transaction"
        same, same_thread = _runs_within(
            0.5,
            _create(acme, lead_list, "+14155550100"),
        )
        assert not same, "the same phone must wait for the transaction that is creating it"
    finally:
        release.set()
        holder.join()
    same_thread.join(10)
    thread.join(10)
    assert Lead.objects.filter(workspace=acme).count() == 2
    assert LeadIdentifier.objects.filter(workspace=acme, value="+14155550100").count() == 1


def test_an_import_waits_for_open_single_lead_writes(acme):
    lead_list = LeadList.objects.create(workspace=acme, name="Quick")
    release = threading.Event()
    holder = _hold_open(release, _create(acme, lead_list, "+14155550100"))
    try:
        imported, thread = _runs_within(
            0.5,
            lambda: lead_import(
                workspace=acme, rows=[{"phone": "+14155550100"}], lead_list=lead_list
            ),  # fmt: skip
        )
        assert not imported, "an import must not run beside an open identifier write"
    finally:
        release.set()
        holder.join()
    thread.join(10)
    assert Lead.objects.filter(workspace=acme).count() == 1


def test_racing_sends_imports_and_merges_keep_one_lead_per_identifier(acme):
    lead_list = LeadList.objects.create(workspace=acme, name="Quick")
    phones = [f"+1415555{i:04d}" for i in range(0, 40, 2)]

    def work(index):
        if index == 0:
            return lead_import(workspace=acme, rows=[{"phone": p} for p in phones],
                               lead_list=lead_list)  # fmt: skip
        created = []
        for offset, phone in enumerate(phones[index:] + phones[:index]):
            lead, _ = lead_get_or_create(
                workspace=acme,
                data={"phone": phone, "email": f"t{index}-{offset}@example.com"},
                lead_list=lead_list,
            )
            alt = {"altEmail1": f"alt{index}-{offset}@example.com"}
            lead_merge_identifiers(workspace=acme, lead=lead, fields=alt)
            created.append(lead.pk)
        return created

    outcomes = threads.run_in_threads(work, 6)
    assert [o for o in outcomes if isinstance(o, Exception)] == []
    assert Lead.objects.filter(workspace=acme).count() == len(phones)
    values = list(LeadIdentifier.objects.filter(workspace=acme).values_list("value", flat=True))
    assert len(values) == len(set(values))
    for lead in Lead.objects.filter(workspace=acme):
        owned = set(LeadIdentifier.objects.filter(lead=lead).values_list("value", flat=True))
        assert owned == {v for _, v in lead.identifiers()}
