"""Starting a campaign on a list: the bulk writer's rows, page after page.

On Postgres the list's messages are expanded on the server (one statement per
page), elsewhere the ORM writes them; these tests hold those rows to the ones
MessageRows builds for one lead, the way a single enrollment writes them.
"""

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from campaigns import enrollment, services
from campaigns.models import Campaign, Enrollment
from campaigns.sequencing import DO_NOT_CONTACT, OPTED_OUT
from leads.models import Lead, LeadIdentifier, ListMembership
from messaging.models import DoNotContact, Message
from tests.campaigns.conftest import list_leads
from tuco.ids import looks_like_id

STEPS = [
    {"message": "Hi {firstName}", "delay": 0, "delayUnit": "minutes"},
    {
        "message": "Texting you",
        "delay": 1,
        "delayUnit": "days",
        "messageType": "sms",
        "smsFallbackMessage": "",
    },
    {"message": "Mailing you", "delay": 2, "delayUnit": "days", "messageType": "email"},
    {"message": "Last one", "delay": 3, "delayUnit": "hours", "smsFallbackMessage": "Bye"},
]
IGNORED = {"id", "temp_guid"}


def expected_rows(campaign, lead, enrollment_row, first_due):
    steps = list(campaign.steps.order_by("position"))
    builder = enrollment.MessageRows(campaign, steps)
    rows = builder.for_lead(
        lead=lead,
        line_id=enrollment_row.line_id,
        batch_id=enrollment_row.batch_id,
        first_due=first_due,
        now=enrollment_row.enrolled_at,
        cancel_reason=enrollment.stop_reason(lead, enrollment.dnc_values(campaign.workspace_id)),
    )
    return [{k: v for k, v in row.items() if k not in IGNORED} for row in rows]


def written_rows(lead):
    fields = [f.attname for f in Message._meta.concrete_fields if f.attname not in IGNORED]
    return list(Message.objects.filter(lead=lead).order_by("step_index").values(*fields))


@pytest.fixture
def started(acme, clock, twilio, make_line, make_list, create_campaign):
    """A 4-step campaign started on a list of 7, in pages of 3 leads."""
    make_line(), make_line()
    lead_list = make_list(7)
    leads = list_leads(lead_list)
    Lead.objects.filter(pk=leads[1].pk).update(last_name="Smith", email="one@example.com")
    Lead.objects.filter(pk=leads[2].pk).update(opted_out=True)
    LeadIdentifier.objects.create(
        workspace=acme, value="dnc@example.com", lead=leads[3], field="email"
    )
    Lead.objects.filter(pk=leads[3].pk).update(email="dnc@example.com")
    DoNotContact.objects.create(workspace=acme, value="dnc@example.com", kind="email")
    created = create_campaign(steps=STEPS, listId=lead_list.pk)
    # Enrolled by hand before the start: the bulk enrollment leaves it alone.
    services.campaign_enroll_lead(workspace=acme, campaign_id=created["_id"], lead_id=leads[5].pk)
    with mock.patch.object(enrollment, "PAGE_SIZE", 3):
        services.campaign_start(workspace=acme, campaign_id=created["_id"])
    return Campaign.objects.get(pk=created["_id"]), list_leads(lead_list)


@pytest.mark.django_db
def test_it_writes_each_lead_the_rows_a_single_enrollment_would(started):
    campaign, leads = started
    for lead in leads:
        row = Enrollment.objects.get(campaign=campaign, lead=lead)
        first = Message.objects.get(lead=lead, step_index=0)
        assert written_rows(lead) == expected_rows(campaign, lead, row, first.scheduled_date)


@pytest.mark.django_db
def test_it_enrolls_every_lead_once_and_stops_the_ones_it_must_not_contact(started):
    campaign, leads = started
    rows = {e.lead_id: e for e in Enrollment.objects.filter(campaign=campaign)}
    assert set(rows) == {lead.pk for lead in leads}
    assert ListMembership.objects.filter(lead__in=leads).count() == len(leads)
    assert Message.objects.filter(campaign_id=campaign.pk).count() == len(leads) * len(STEPS)
    stopped = {lead_id for lead_id, e in rows.items() if e.state == "stopped"}
    assert stopped == {leads[2].pk, leads[3].pk}
    assert all(rows[lead_id].finished_at is not None for lead_id in stopped)
    reasons = dict(
        Message.objects.filter(campaign_id=campaign.pk, status="cancelled")
        .values_list("lead_id", "cancel_reason")
        .distinct()
    )
    assert reasons == {leads[2].pk: OPTED_OUT, leads[3].pk: DO_NOT_CONTACT}


@pytest.mark.django_db
def test_its_ids_are_unique_and_follow_the_insert_order(started):
    campaign, leads = started
    bulk = [lead for i, lead in enumerate(leads) if i != 5]
    messages = list(
        Message.objects.filter(lead__in=bulk)
        .order_by("lead_id", "step_index")
        .values_list("id", "temp_guid")
    )
    ids = [pk for pk, _ in messages]
    assert all(looks_like_id(pk) for pk in ids)
    assert len(set(ids)) == len(ids)
    # In (lead, step) order within a page; every page starts a run of its own.
    for page in (ids[0:12], ids[12:24], ids[24:]):
        assert page == sorted(page)
    guids = [guid for _, guid in messages]
    assert len(set(guids)) == len(guids)
    assert all(isinstance(g, uuid.UUID) and g.version == 4 for g in guids)
    enrollment_ids = list(Enrollment.objects.filter(campaign=campaign).values_list("id", flat=True))
    assert all(looks_like_id(pk) for pk in enrollment_ids)
    assert len(set(enrollment_ids)) == len(enrollment_ids)


@pytest.mark.django_db
def test_first_sends_follow_the_list_order_a_microsecond_apart(started, clock):
    campaign, leads = started
    bulk = [lead for i, lead in enumerate(leads) if i != 5]
    firsts = dict(
        Message.objects.filter(lead__in=bulk, step_index=0).values_list("lead_id", "scheduled_date")
    )
    assert [firsts[lead.pk] for lead in bulk] == [
        clock.now + timedelta(microseconds=k) for k in range(len(bulk))
    ]
    states = {
        e.lead_id: (e.state, e.finished_at, e.enrolled_at)
        for e in Enrollment.objects.filter(lead__in=bulk)
    }
    for lead in bulk:
        state, finished_at, enrolled_at = states[lead.pk]
        stopped = lead.opted_out or lead.email == "dnc@example.com"
        assert (state, finished_at) == (("stopped", enrolled_at) if stopped else ("active", None))


@pytest.mark.django_db
def test_it_reads_the_list_in_one_query_whatever_its_pages(
    acme, clock, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(7)
    created = create_campaign(steps=STEPS[:1], listId=lead_list.pk)
    with (
        mock.patch.object(enrollment, "PAGE_SIZE", 2),
        CaptureQueriesContext(connection) as queries,
    ):
        services.campaign_start(workspace=acme, campaign_id=created["_id"])
    reads = [q["sql"] for q in queries if "leads_listmembership" in q["sql"]]
    assert len(reads) == 1
    assert Enrollment.objects.filter(campaign_id=created["_id"]).count() == 7


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the server-side page writer")
def test_a_page_that_fails_leaves_nothing_written(
    acme, clock, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(7)
    created = create_campaign(steps=STEPS[:1], listId=lead_list.pk)
    pages = iter(range(10))

    def failing_from_the_third(*args, **kwargs):
        # Page 3's tempGuids are not hexadecimal: its statement fails on the server.
        return "zz" * 13 if next(pages) == 2 else enrollment_guid_prefix()

    enrollment_guid_prefix = enrollment._guid_prefix
    with (
        mock.patch.object(enrollment, "PAGE_SIZE", 2),
        mock.patch.object(enrollment, "_guid_prefix", failing_from_the_third),
        pytest.raises(DatabaseError),
    ):
        services.campaign_start(workspace=acme, campaign_id=created["_id"])
    assert Campaign.objects.get(pk=created["_id"]).status == Campaign.Status.DRAFT
    assert not Enrollment.objects.filter(campaign_id=created["_id"]).exists()
    assert not Message.objects.filter(campaign_id=created["_id"]).exists()


@pytest.mark.django_db
def test_an_error_on_a_later_page_rolls_back_the_pages_written(
    acme, clock, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(7)
    created = create_campaign(steps=STEPS[:1], listId=lead_list.pk)
    decisions = iter(range(10))
    stop_reason_for = enrollment._stop_reason_for

    def failing_on_the_fifth_lead(lead, dnc):
        # Lead 5 is on page 3: pages 1 and 2 are written by then.
        if next(decisions) == 4:
            raise RuntimeError("boom")
        return stop_reason_for(lead, dnc)

    with (
        mock.patch.object(enrollment, "PAGE_SIZE", 2),
        mock.patch.object(enrollment, "_stop_reason_for", failing_on_the_fifth_lead),
        pytest.raises(RuntimeError, match="boom"),
    ):
        services.campaign_start(workspace=acme, campaign_id=created["_id"])
    assert Campaign.objects.get(pk=created["_id"]).status == Campaign.Status.DRAFT
    assert not Enrollment.objects.filter(campaign_id=created["_id"]).exists()
    assert not Message.objects.filter(campaign_id=created["_id"]).exists()
