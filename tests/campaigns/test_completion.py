"""When a campaign completes: once none of its messages is pending, scheduled or
sending, and not before it has any message at all."""

from datetime import timedelta

import pytest

from campaigns.models import Campaign, Enrollment
from campaigns.sequencing import AFTER_FAILURE
from campaigns.services import campaign_start, campaigns_tick
from messaging.models import Message
from tests.campaigns.conftest import drive, list_leads
from tests.campaigns.test_faults import SHORT_STEPS, act, get, texts_to

STEPS = SHORT_STEPS[:2]


@pytest.mark.django_db
def test_a_failed_step_cancels_the_rest_and_completion_waits_for_the_others(
    acme, clock, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(2)
    failing, other = list_leads(lead_list)
    body = create_campaign(listId=lead_list.pk, steps=STEPS)
    campaign_start(workspace=acme, campaign_id=body["_id"])
    Message.objects.filter(lead=failing, step_index=0).update(status="failed")
    Message.objects.filter(lead=other, step_index=0).update(status="sent", sent_at=clock.now)
    campaigns_tick()

    behind = Message.objects.get(lead=failing, step_index=1)
    assert (behind.status, behind.cancel_reason) == ("cancelled", AFTER_FAILURE)
    # The other lead's second step is scheduled: the campaign is not done.
    assert Message.objects.get(lead=other, step_index=1).status == "scheduled"
    assert Campaign.objects.get().status == "active"

    Message.objects.filter(lead=other, step_index=1).update(status="sent", sent_at=clock.now)
    campaigns_tick()
    campaign = Campaign.objects.get()
    assert campaign.status == "completed"
    assert not Message.objects.filter(status__in=["pending", "scheduled", "sending"]).exists()
    assert Enrollment.objects.get(lead=failing).state == "failed"
    assert Enrollment.objects.get(lead=other).state == "completed"


@pytest.mark.django_db
def test_a_message_still_sending_keeps_the_campaign_open(
    acme, clock, make_line, make_list, create_campaign
):
    make_line()
    lead_list = make_list(1)
    body = create_campaign(listId=lead_list.pk, steps=STEPS[:1])
    campaign_start(workspace=acme, campaign_id=body["_id"])
    Message.objects.update(status="sending")
    campaigns_tick()
    assert Campaign.objects.get().status == "active"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_list", [True, False])
def test_a_campaign_with_no_leads_yet_stays_active_until_leads_are_added(
    api, clock, sim, make_line, make_list, create_campaign, with_list
):
    make_line()
    body = {"steps": STEPS[:1]}
    if with_list:
        body["listId"] = make_list(0).pk
    campaign = create_campaign(**body)
    assert act(api, campaign["_id"], "start")["status"] == "active"
    for _ in range(3):
        clock.advance(minutes=5)
        drive(clock, rounds=1)
    assert get(api, campaign["_id"])["status"] == "active"
    assert Campaign.objects.get().completed_at is None

    response = api.post(
        f"/api/campaigns/{campaign['_id']}/leads",
        {"lead": {"firstName": "Late", "phone": "+12025550170"}},
        format="json",
    )
    assert response.status_code == 201
    drive(clock, rounds=2, step=timedelta(seconds=1))
    assert texts_to(sim, "+12025550170") == ["First"]
    assert get(api, campaign["_id"])["status"] == "completed"
