"""Replies, lines going down, pause / resume, retry_failed, caps and windows, each
run against the relay simulator with a controllable clock."""

from collections import Counter
from datetime import timedelta

import pytest

from campaigns.models import Campaign, Enrollment
from campaigns.sequencing import AFTER_FAILURE
from campaigns.services import campaigns_tick
from leads.models import Lead, LeadIdentifier, ListMembership
from lines.models import Line
from messaging.inbound import inbound_record
from messaging.models import Message
from tests.campaigns.conftest import drive, list_leads

pytestmark = pytest.mark.django_db(transaction=True)

SHORT_STEPS = [
    {"message": "First", "delay": 0, "delayUnit": "minutes"},
    {"message": "Second", "delay": 1, "delayUnit": "hours"},
    {"message": "Third", "delay": 1, "delayUnit": "hours"},
]


def act(api, campaign_id, action):
    response = api.put(
        "/api/campaigns", {"campaignId": campaign_id, "action": action}, format="json"
    )
    assert response.status_code == 200, response.json()
    return response.json()["campaign"]


def get(api, campaign_id):
    return api.get(f"/api/campaigns/{campaign_id}").json()


def sends(sim) -> Counter:
    """(address, text) -> how many times the relay accepted it."""
    return Counter(
        (
            m["handle"]["address"] if isinstance(m.get("handle"), dict) else m.get("address", ""),
            m["text"],
        )
        for m in sim.sent
    )


def texts_to(sim, phone) -> list[str]:
    return [text for (address, text), n in sends(sim).items() for _ in range(n) if phone in address]


def set_line(line, **fields):
    Line.objects.filter(pk=line.pk).update(**fields)


def test_a_reply_between_steps_cancels_the_remaining_steps(
    api, acme, clock, sim, make_line, make_list, create_campaign
):
    line = make_line()
    lead_list = make_list(2)
    replier, other = list_leads(lead_list)
    campaign = create_campaign(listId=lead_list.pk, lineIds=[line.pk], steps=SHORT_STEPS)
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    assert len(sim.sent) == 2

    clock.advance(minutes=10)
    inbound_record(
        workspace=acme, address=replier.phone, text="Not interested", channel="imessage", line=line
    )
    for _ in range(4):
        clock.advance(hours=1)
        drive(clock, rounds=2)

    assert texts_to(sim, replier.phone) == ["First"]
    assert sorted(texts_to(sim, other.phone)) == ["First", "Second", "Third"]
    replier_statuses = (
        Message.objects.filter(lead=replier).order_by("step_index").values_list("status", flat=True)
    )
    assert list(replier_statuses) == ["sent", "cancelled", "cancelled"]
    body = get(api, campaign["_id"])
    assert body["status"] == "completed"
    assert body["stats"]["replied"] == 1
    assert body["stats"]["sent"] == 4
    assert body["stats"]["cancelled"] == 2
    assert Enrollment.objects.get(lead=replier).state == "stopped"
    assert Enrollment.objects.get(lead=other).state == "completed"


def test_with_reply_behavior_continue_a_reply_does_not_stop_the_sequence(
    api, acme, clock, sim, make_line, make_list, create_campaign
):
    line = make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    campaign = create_campaign(
        listId=lead_list.pk, steps=SHORT_STEPS, settings={"replyBehavior": "continue"}
    )
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    inbound_record(
        workspace=acme, address=lead.phone, text="Tell me more", channel="imessage", line=line
    )
    for _ in range(3):
        clock.advance(hours=1, minutes=1)
        drive(clock, rounds=2)
    assert texts_to(sim, lead.phone) == ["First", "Second", "Third"]
    assert get(api, campaign["_id"])["stats"]["replied"] == 1


def test_leads_not_yet_contacted_move_off_a_line_that_goes_down(
    api, clock, sim, make_line, make_list, create_campaign
):
    line_a = make_line(daily_new_conversations_limit=1)
    line_b = make_line(daily_new_conversations_limit=1)
    lead_list = make_list(4)
    campaign = create_campaign(
        listId=lead_list.pk, lineIds=[line_a.pk, line_b.pk], steps=SHORT_STEPS[:2]
    )
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    assert len(sim.sent) == 2  # one new conversation per line today
    on_a = Enrollment.objects.filter(line=line_a)
    contacted_on_a = on_a.filter(lead__messages__step_index=0, lead__messages__status="sent").get()
    waiting_on_a = on_a.exclude(pk=contacted_on_a.pk).get()

    set_line(line_a, health_status="down")
    campaigns_tick()
    waiting_on_a.refresh_from_db()
    contacted_on_a.refresh_from_db()
    assert waiting_on_a.line_id == line_b.pk
    assert set(
        Message.objects.filter(lead=waiting_on_a.lead).values_list("line_id", flat=True)
    ) == {line_b.pk}
    assert contacted_on_a.line_id == line_a.pk  # a lead already talked to keeps its line

    # Every line down: the campaign waits, sends nothing, and resumes by itself.
    set_line(line_b, health_status="down")
    clock.advance(days=1)
    drive(clock, rounds=3, step=timedelta(minutes=2))
    assert len(sim.sent) == 2
    assert Campaign.objects.get().status == "active"

    set_line(line_a, health_status="healthy")
    set_line(line_b, health_status="healthy")
    for _ in range(3):
        clock.advance(days=1)
        drive(clock, rounds=3, step=timedelta(minutes=2))
    assert get(api, campaign["_id"])["status"] == "completed"
    counts = sends(sim)
    assert len(counts) == 8 and set(counts.values()) == {1}  # every step to every lead, once
    for enrollment in Enrollment.objects.all():
        assert set(
            Message.objects.filter(lead=enrollment.lead).values_list("line_id", flat=True)
        ) == {enrollment.line_id}


def test_pause_stops_new_sends_and_resume_continues_without_duplicates_or_gaps(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(3)
    campaign = create_campaign(listId=lead_list.pk, steps=SHORT_STEPS)
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    assert len(sim.sent) == 3

    act(api, campaign["_id"], "pause")
    assert not Message.objects.filter(status__in=["pending", "scheduled"], held=False).exists()
    for _ in range(3):
        clock.advance(hours=1)
        drive(clock, rounds=2)
    assert len(sim.sent) == 3
    assert get(api, campaign["_id"])["status"] == "paused"

    act(api, campaign["_id"], "resume")
    drive(clock, rounds=2)
    assert len(sim.sent) == 6  # step 2 was overdue: it goes now, once
    clock.advance(hours=1, minutes=1)
    drive(clock, rounds=2)
    counts = sends(sim)
    assert len(counts) == 9 and set(counts.values()) == {1}
    assert get(api, campaign["_id"])["status"] == "completed"


def test_retry_failed_requeues_only_failed_messages(
    api, acme, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    broken = Lead.objects.create(workspace=acme, phone="+12025559999", first_name="Broken")
    LeadIdentifier.objects.create(workspace=acme, value=broken.phone, lead=broken, field="phone")
    ListMembership.objects.create(lead_list=lead_list, lead=broken)
    campaign = create_campaign(listId=lead_list.pk, steps=SHORT_STEPS[:2])
    act(api, campaign["_id"], "start")
    for _ in range(6):
        drive(clock, rounds=1)
        clock.advance(minutes=31)
    failed = Message.objects.get(lead=broken, step_index=0)
    assert failed.status == "failed"
    behind = Message.objects.get(lead=broken, step_index=1)
    assert (behind.status, behind.cancel_reason) == ("cancelled", AFTER_FAILURE)
    body = get(api, campaign["_id"])
    assert body["stats"]["failed"] == 1
    # The healthy lead is done; the broken lead's sequence stopped at its failure.
    assert body["status"] == "completed"
    assert body["stats"]["stalled"] == 1
    assert body["stats"]["cancelled"] == 0
    assert body["stats"]["pending"] == 0

    sim.registry[broken.phone] = True
    others = Message.objects.exclude(lead=broken)
    before = {m.pk: (m.status, m.due_at, m.updated_at) for m in others}
    act(api, campaign["_id"], "retry_failed")
    assert {m.pk: (m.status, m.due_at, m.updated_at) for m in others} == before
    drive(clock, rounds=2)
    failed.refresh_from_db()
    assert failed.status == "sent"
    assert texts_to(sim, broken.phone) == ["First"]
    clock.advance(hours=1, minutes=1)
    drive(clock, rounds=2)
    assert texts_to(sim, broken.phone) == ["First", "Second"]
    body = get(api, campaign["_id"])
    assert body["status"] == "completed"
    assert body["stats"]["sent"] == 4
    assert body["stats"]["failed"] == 0
    assert body["stats"]["stalled"] == 0


def test_older_campaigns_get_first_claim_on_a_shared_line_within_its_cap(
    api, clock, sim, make_line, make_list, create_campaign
):
    line = make_line(daily_new_conversations_limit=2)
    old_list, new_list = make_list(3), make_list(3)
    old = create_campaign(name="Old", listId=old_list.pk, steps=SHORT_STEPS[:1])
    new = create_campaign(name="New", listId=new_list.pk, steps=SHORT_STEPS[:1])
    act(api, old["_id"], "start")
    clock.advance(seconds=1)
    act(api, new["_id"], "start")
    drive(clock, rounds=3)
    assert get(api, old["_id"])["stats"]["sent"] == 2
    assert get(api, new["_id"])["stats"]["sent"] == 0
    clock.advance(days=1)
    drive(clock, rounds=3)
    assert get(api, old["_id"])["stats"]["sent"] == 3
    assert get(api, new["_id"])["stats"]["sent"] == 1
    assert (
        Line.objects.get(pk=line.pk).usage_days.order_by("date").last().new_conversations_count == 2
    )


def test_it_sends_only_inside_the_send_window(
    api, clock, sim, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(2)
    # 15:00 UTC is 10:00 in New York; the window opens at 11:00 there.
    campaign = create_campaign(
        listId=lead_list.pk,
        steps=SHORT_STEPS[:1],
        settings={
            "timezone": "America/New_York",
            "sendWindowStart": "11:00",
            "sendWindowEnd": "12:00",
        },
    )
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    assert sim.sent == []
    waiting = Message.objects.filter(status="scheduled")
    assert {m.scheduled_date.isoformat() for m in waiting} == {"2026-03-04T16:00:00+00:00"}
    clock.advance(hours=1)
    drive(clock, rounds=2)
    assert len(sim.sent) == 2
