"""The campaign page's "Test with a lead" panel: the dry run a step at a time, with
replies played as the lead, and nothing sent."""

import pytest

from campaigns.conditions import Rule
from campaigns.services import CampaignSettings, campaign_create
from campaigns.steps import BranchSpec, StepSpec
from leads.models import Lead, LeadIdentifier
from messaging.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(acme):
    return campaign_create(
        workspace=acme,
        name="Spring",
        steps=[
            StepSpec(message="Hello {firstName}", delay_unit="minutes"),
            StepSpec(
                kind="branch",
                delay=1,
                delay_unit="hours",
                branches=(
                    BranchSpec(Rule(type="replied"), (StepSpec(message="Glad you wrote"),)),
                    BranchSpec(Rule(type="default"), (StepSpec(message="Checking in"),)),
                ),
            ),
        ],
        settings=CampaignSettings(reply_behavior="continue"),
    )


@pytest.fixture
def lead(acme):
    lead = Lead.objects.create(workspace=acme, first_name="Ada", phone="+12025550100")
    LeadIdentifier.objects.create(workspace=acme, value=lead.phone, lead=lead, field="phone")
    return lead


def post(client, campaign, **data):
    response = client.post(f"/campaigns/{campaign.pk}/test/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def test_the_panel_is_on_the_campaign_page(alice_client, campaign):
    page = alice_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Test with a lead" in page
    assert f'hx-post="/campaigns/{campaign.pk}/test/"' in page


def test_it_shows_the_path_a_step_at_a_time(alice_client, campaign, lead):
    page = post(alice_client, campaign, lead="(202) 555-0100")
    assert "Hello Ada" in page
    assert "Branch at step 2" not in page
    page = post(alice_client, campaign, lead=lead.phone, shown="1", test_op="forward")
    assert "Takes path 2: Default path" in page
    page = post(alice_client, campaign, lead=lead.phone, shown="2", test_op="forward")
    assert "Checking in" in page
    assert "End of the sequence." in page
    assert not Message.objects.exists()


def test_a_reply_played_as_the_lead_changes_what_happens_next(alice_client, campaign, lead):
    page = post(alice_client, campaign, lead=lead.pk, shown="1", test_op="reply", reply="Hi!")
    assert "Lead replies: “Hi!”" in page
    assert "Takes path 1: Lead replied at" in page
    page = post(
        alice_client,
        campaign,
        lead=lead.pk,
        shown="2",
        reply_after="1",
        reply_text="Hi!",
        test_op="forward",
    )
    assert "Glad you wrote" in page
    page = post(alice_client, campaign, lead=lead.pk, shown="3", test_op="restart",
                reply_after="1", reply_text="Hi!")  # fmt: skip
    assert "Lead replies" not in page
    assert not Message.objects.exists()


def test_an_unknown_lead_is_explained(alice_client, campaign, globex):
    other = Lead.objects.create(workspace=globex, phone="+12025550111")
    page = post(alice_client, campaign, lead=other.pk)
    assert "No lead with this phone number, email address or id." in page
