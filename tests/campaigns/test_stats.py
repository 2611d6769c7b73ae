"""Campaign stats: replied counts the leads whose reply answers this campaign."""

from datetime import timedelta

import pytest

from campaigns.selectors import campaign_stats
from campaigns.services import campaign_start
from messaging.inbound import inbound_record
from messaging.models import Message
from tests.campaigns.conftest import list_leads

pytestmark = pytest.mark.django_db

ONE_STEP = [{"message": "Hi", "delay": 0, "delayUnit": "minutes"}]


def sent(campaign_id, lead, at):
    Message.objects.filter(campaign_id=campaign_id, lead=lead, step_index=0).update(
        status="sent", sent_at=at
    )


def test_a_lead_in_two_campaigns_counts_as_replied_in_the_one_it_answered(
    acme, clock, make_line, make_list, create_campaign
):
    line = make_line()
    lead_list = make_list(2)
    lead, quiet = list_leads(lead_list)
    older = create_campaign(name="Older", listId=lead_list.pk, steps=ONE_STEP)["_id"]
    newer = create_campaign(name="Newer", listId=lead_list.pk, steps=ONE_STEP)["_id"]
    for campaign_id in (older, newer):
        campaign_start(workspace=acme, campaign_id=campaign_id)
    sent(older, lead, clock.now)
    sent(older, quiet, clock.now)
    sent(newer, lead, clock.now + timedelta(minutes=5))
    clock.advance(minutes=10)
    # Two replies from the same lead count once.
    for text in ("Which one is this?", "Oh, got it"):
        inbound_record(workspace=acme, address=lead.phone, text=text, channel="imessage", line=line)

    stats = campaign_stats([older, newer])
    assert stats[newer]["replied"] == 1
    assert stats[older]["replied"] == 0


def test_a_reply_to_a_message_outside_the_campaign_does_not_count(
    acme, clock, make_line, make_list, create_campaign
):
    line = make_line()
    lead_list = make_list(1)
    (lead,) = list_leads(lead_list)
    campaign_id = create_campaign(listId=lead_list.pk, steps=ONE_STEP)["_id"]
    campaign_start(workspace=acme, campaign_id=campaign_id)
    sent(campaign_id, lead, clock.now)
    Message.objects.create(
        workspace=acme,
        lead=lead,
        recipient_phone=lead.phone,
        body="A quick send",
        status="sent",
        sent_at=clock.now + timedelta(minutes=1),
    )
    clock.advance(minutes=2)
    inbound_record(workspace=acme, address=lead.phone, text="Thanks", channel="imessage", line=line)
    assert campaign_stats([campaign_id])[campaign_id]["replied"] == 0
