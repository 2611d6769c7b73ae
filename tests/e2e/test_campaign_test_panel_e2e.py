"""The "Test with a lead" panel in the browser: a campaign with a branch (replied /
default), a lead picked, fast-forwarded to the branch, then a reply typed as the
lead moves the path to the replied branch. Nothing is sent or stored."""

import pytest
from playwright.sync_api import expect

from campaigns.conditions import Rule
from campaigns.models import BranchDecision, Enrollment
from campaigns.services import CampaignSettings, StepSpec, campaign_create
from campaigns.steps import BranchSpec
from leads.models import Lead
from lines.services import line_create
from lines.simulator import RelaySimulator
from messaging.models import InboundMessage, Message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "sim-password"


@pytest.fixture
def sim():
    with RelaySimulator(password=PASSWORD, delivery_delay=0) as simulator:
        yield simulator


def test_a_reply_played_in_the_test_panel_takes_the_replied_branch(
    signed_in, live_server, acme, sim, screenshot
):
    line = line_create(workspace=acme, server_url=sim.url, relay_password=PASSWORD)
    lead = Lead.objects.create(workspace=acme, first_name="Dana", phone="+14155550100")
    branch = StepSpec(
        kind="branch",
        delay=1,
        delay_unit="hours",
        branches=(
            BranchSpec(
                Rule(type="replied", id="replied"),
                (StepSpec("Thanks for replying, {firstName}", delay=0, delay_unit="minutes"),),
            ),
            BranchSpec(
                Rule(type="default", id="default"),
                (StepSpec("Standard note", delay=0, delay_unit="minutes"),),
            ),
        ),
    )
    campaign = campaign_create(
        workspace=acme,
        name="Branch test",
        steps=[StepSpec("Hello {firstName}", delay=0, delay_unit="minutes"), branch],
        line_ids=[line.pk],
        settings=CampaignSettings(reply_behavior="continue"),
    )

    page = signed_in
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    panel = page.locator("#test-panel")
    panel.get_by_label("Lead (phone, email or id)").fill(lead.pk)
    panel.get_by_role("button", name="Test", exact=True).click()
    expect(panel.locator(".test-text").first).to_have_text("Hello Dana")

    # Fast-forward to the branch: without a reply the lead takes the Default path.
    panel.get_by_role("button", name="Fast-forward to the next step").click()
    expect(panel.locator("div.test-branch")).to_contain_text("Takes path 2")

    # The lead replies: the branch now takes the replied path.
    panel.get_by_label("Reply as the lead").fill("Sounds good")
    panel.get_by_role("button", name="Send reply and continue").click()
    expect(panel.locator(".test-reply")).to_contain_text("Sounds good")
    expect(panel.locator("div.test-branch")).to_contain_text("Takes path 1")
    expect(panel.locator(".test-text").last).to_have_text("Thanks for replying, Dana")
    expect(panel.get_by_text("Standard note")).to_have_count(0)
    screenshot("campaign-test-panel-branch.png")

    assert not Message.objects.filter(status="sent").exists()
    assert not Message.objects.exists()
    assert not InboundMessage.objects.exists()
    assert not Enrollment.objects.exists()
    assert not BranchDecision.objects.exists()
    assert sim.sent == []
    assert sim.stats["sent"] == 0
