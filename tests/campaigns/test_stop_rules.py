"""A campaign never writes to a lead who replied (replyBehavior "stop"), opted out or
is on the do-not-contact list: not with its first step, and not on retry_failed."""

import pytest

from campaigns.models import Campaign, Enrollment
from campaigns.sequencing import AFTER_FAILURE, DO_NOT_CONTACT, OPTED_OUT, REPLIED
from leads.models import Lead, LeadIdentifier, ListMembership
from messaging.inbound import inbound_record
from messaging.models import DoNotContact, Message
from tests.campaigns.conftest import drive, list_leads
from tests.campaigns.test_faults import SHORT_STEPS, act, get, texts_to

pytestmark = pytest.mark.django_db(transaction=True)

# Step 1 waits ten minutes after enrolling: time for something to happen before the
# gate lets it through.
DELAYED = [{**SHORT_STEPS[0], "delay": 10}, *SHORT_STEPS[1:]]


def statuses(lead):
    return list(
        Message.objects.filter(lead=lead)
        .order_by("step_index")
        .values_list("status", "cancel_reason")
    )


def test_a_reply_before_the_first_step_is_released_stops_the_lead(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(2)
    replier, other = list_leads(lead_list)
    campaign = create_campaign(
        listId=lead_list.pk, steps=DELAYED, settings={"sendImmediately": False}
    )
    act(api, campaign["_id"], "start")
    # The reply is on record, but its cancel missed the held rows (they were locked
    # by a tick, or written by an enrollment not committed yet).
    clock.advance(minutes=1)
    Lead.objects.filter(pk=replier.pk).update(replied_at=clock.now)
    clock.advance(minutes=10)
    drive(clock, rounds=2)

    assert texts_to(sim, replier.phone) == []
    assert texts_to(sim, other.phone) == ["First"]
    assert statuses(replier) == [("cancelled", REPLIED)] * 3
    assert Enrollment.objects.get(lead=replier).state == "stopped"


def test_a_reply_from_before_enrolling_does_not_stop_the_first_step(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    Lead.objects.filter(pk=lead.pk).update(replied_at=clock.now)
    clock.advance(minutes=1)
    campaign = create_campaign(listId=lead_list.pk, steps=SHORT_STEPS[:1])
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    assert texts_to(sim, lead.phone) == ["First"]


def test_the_gate_stops_leads_that_opted_out_or_went_on_the_dnc_list(
    api, acme, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(3)
    opted, listed, other = list_leads(lead_list)
    campaign = create_campaign(
        listId=lead_list.pk, steps=DELAYED[:2], settings={"sendImmediately": False}
    )
    act(api, campaign["_id"], "start")
    # Straight in the database: the services that do this cancel waiting messages
    # themselves, and the gate must not depend on that.
    Lead.objects.filter(pk=opted.pk).update(opted_out=True)
    DoNotContact.objects.create(workspace=acme, value=listed.phone, kind="phone")
    clock.advance(minutes=11)
    drive(clock, rounds=2)

    assert texts_to(sim, other.phone) == ["First"]
    assert len(sim.sent) == 1
    assert statuses(opted) == [("cancelled", OPTED_OUT)] * 2
    assert statuses(listed) == [("cancelled", DO_NOT_CONTACT)] * 2


def _failing_lead(acme, lead_list):
    broken = Lead.objects.create(workspace=acme, phone="+12025559999", first_name="Broken")
    LeadIdentifier.objects.create(workspace=acme, value=broken.phone, lead=broken, field="phone")
    ListMembership.objects.create(lead_list=lead_list, lead=broken)
    return broken


def _run_until_failed(clock):
    for _ in range(6):
        drive(clock, rounds=1)
        clock.advance(minutes=31)


def test_retry_failed_does_not_write_to_a_lead_who_replied_since(
    api, acme, clock, sim, make_line, make_list, create_campaign
):
    line = make_line()
    lead_list = make_list(1)
    broken = _failing_lead(acme, lead_list)
    campaign = create_campaign(listId=lead_list.pk, steps=SHORT_STEPS[:2])
    act(api, campaign["_id"], "start")
    _run_until_failed(clock)
    assert Message.objects.get(lead=broken, step_index=0).status == "failed"
    assert get(api, campaign["_id"])["status"] == "completed"

    inbound_record(
        workspace=acme, address=broken.phone, text="Who is this?", channel="imessage", line=line
    )
    sim.registry[broken.phone] = True
    body = act(api, campaign["_id"], "retry_failed")

    assert body["status"] == "completed"
    assert statuses(broken) == [("failed", ""), ("cancelled", REPLIED)]
    assert Enrollment.objects.get(lead=broken).state == "stopped"
    drive(clock, rounds=3)
    assert texts_to(sim, broken.phone) == []


def test_retry_failed_leaves_a_stopped_enrollment_stopped(
    api, acme, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    broken = _failing_lead(acme, lead_list)
    campaign = create_campaign(listId=lead_list.pk, steps=SHORT_STEPS[:2])
    act(api, campaign["_id"], "start")
    _run_until_failed(clock)
    Enrollment.objects.filter(lead=broken).update(state="stopped")
    sim.registry[broken.phone] = True

    act(api, campaign["_id"], "retry_failed")

    assert Enrollment.objects.get(lead=broken).state == "stopped"
    assert statuses(broken) == [("failed", ""), ("cancelled", AFTER_FAILURE)]
    assert Campaign.objects.get().status == "completed"
    drive(clock, rounds=3)
    assert texts_to(sim, broken.phone) == []
