"""Pacing across lines: round robin within each line's limits, and a lead keeps the
line that already talks to it."""

import pytest

from campaigns.models import Enrollment
from messaging.models import Conversation, Message
from tests.campaigns.conftest import drive, list_leads
from tests.campaigns.test_faults import SHORT_STEPS, act, get

pytestmark = pytest.mark.django_db(transaction=True)


def lines_of(lead) -> set[str]:
    return set(Message.objects.filter(lead=lead).values_list("line_id", flat=True))


def test_leads_waiting_on_a_line_out_of_room_move_to_a_line_with_room(
    api, clock, sim, make_line, make_list, create_campaign
):
    small = make_line(daily_new_conversations_limit=1)
    big = make_line(daily_new_conversations_limit=10)
    lead_list = make_list(4)
    campaign = create_campaign(
        listId=lead_list.pk, lineIds=[small.pk, big.pk], steps=SHORT_STEPS[:2]
    )
    # Round robin deals two leads to each line; starting runs the gate once.
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)

    # The small line's one new conversation went out; its other lead moved and went
    # out on the big line the same day.
    assert get(api, campaign["_id"])["stats"]["sent"] == 4
    assert len(sim.sent) == 4
    on_small = Enrollment.objects.filter(line=small)
    assert on_small.count() == 1
    assert Message.objects.get(lead=on_small.get().lead, step_index=0).line_id == small.pk
    for enrollment in Enrollment.objects.select_related("lead"):
        assert lines_of(enrollment.lead) == {enrollment.line_id}

    # Contacted leads keep their line for the next step, full or not.
    clock.advance(hours=1, minutes=1)
    drive(clock, rounds=2)
    assert get(api, campaign["_id"])["status"] == "completed"
    for enrollment in Enrollment.objects.select_related("lead"):
        assert lines_of(enrollment.lead) == {enrollment.line_id}
    assert Enrollment.objects.filter(line=small).count() == 1


def test_a_lead_already_talking_to_a_full_line_waits_for_it(
    api, acme, clock, sim, make_line, make_list, create_campaign
):
    small = make_line(daily_new_conversations_limit=1)
    big = make_line(daily_new_conversations_limit=10)
    lead_list = make_list(3)
    first, second, third = list_leads(lead_list)
    campaign = create_campaign(
        listId=lead_list.pk, lineIds=[small.pk, big.pk], steps=SHORT_STEPS[:1]
    )
    # `third` (dealt to the small line after `first`) already talks to the small line.
    Conversation.objects.create(workspace=acme, address=third.phone, lead=third, line=small)
    act(api, campaign["_id"], "start")
    drive(clock, rounds=2)
    assert Message.objects.get(lead=first).status == "sent"
    assert Message.objects.get(lead=second).line_id == big.pk
    assert Enrollment.objects.get(lead=third).line_id == small.pk
    assert Message.objects.get(lead=third).status == "scheduled"


def test_enrolling_a_list_keeps_each_lead_on_the_line_it_talks_to(
    api, acme, clock, make_line, make_list, create_campaign
):
    line_a, line_b, elsewhere = make_line(), make_line(), make_line()
    lead_list = make_list(4)
    leads = list_leads(lead_list)
    # Round robin would give leads[0] line A; it already talks to line B. leads[1]
    # talks to a line the campaign does not use: round robin as usual.
    Conversation.objects.create(workspace=acme, address=leads[0].phone, line=line_b)
    Conversation.objects.create(
        workspace=acme, address=leads[1].phone, lead=leads[1], line=elsewhere
    )
    campaign = create_campaign(listId=lead_list.pk, lineIds=[line_a.pk, line_b.pk])
    act(api, campaign["_id"], "start")
    lines = dict(Enrollment.objects.values_list("lead_id", "line_id"))
    assert lines[leads[0].pk] == line_b.pk
    assert lines_of(leads[0]) == {line_b.pk}
    assert sorted(lines[lead.pk] for lead in leads[1:]) == sorted([line_a.pk, line_b.pk, line_a.pk])


def test_adding_a_lead_keeps_it_on_the_line_it_talks_to(api, acme, make_line, create_campaign):
    line_a, line_b = make_line(), make_line()
    campaign = create_campaign(lineIds=[line_a.pk, line_b.pk])
    act(api, campaign["_id"], "start")
    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads",
        {"lead": {"firstName": "Known", "phone": "+12025550142"}},
        format="json",
    )
    assert response.status_code == 201
    # The conversation may name the lead or only its address.
    lead_id = response.json()["leadId"]
    assert Enrollment.objects.get(lead_id=lead_id).line_id == line_a.pk
    Conversation.objects.create(workspace=acme, address="+12025550144", line=line_a)
    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads",
        {"lead": {"firstName": "Talks", "phone": "+12025550144"}},
        format="json",
    )
    enrollment = Enrollment.objects.get(lead_id=response.json()["leadId"])
    assert enrollment.line_id == line_a.pk  # round robin would have given line B
    assert lines_of(enrollment.lead) == {line_a.pk}
