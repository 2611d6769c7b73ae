"""Building a branching campaign in the browser: a stop condition on step 2 and a
branch with two paths, a missing Default caught in place, then saved."""

import pytest
from playwright.sync_api import expect

from campaigns.models import Campaign

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def settled(page):
    """Wait for htmx to finish its round trip: new content gets its handlers (a select
    that asks the server on change) only when it settles, a moment after the swap."""
    page.wait_for_function(
        "!document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')"
    )


def test_build_a_branching_campaign(signed_in, live_server, acme, screenshot):
    page = signed_in
    page.goto(f"{live_server.url}/campaigns/new/")
    page.get_by_label("Name").fill("Branching outreach")
    page.locator("#id_steps-0-message").fill("Hi {firstName}")

    page.get_by_role("button", name="+ Add step").click()
    page.locator("#id_steps-1-message").fill("Checking in")
    page.get_by_role("button", name="+ Add stop condition").click()
    expect(page.locator("#steps-1-rule-0-type")).to_be_visible()
    settled(page)
    page.locator("#steps-1-rule-0-type").select_option("tag_exists")
    page.locator("#steps-1-rule-0-tag").fill("customer")

    page.get_by_role("button", name="+ Add step").click()
    expect(page.locator("#id_steps-2-kind")).to_be_visible()
    settled(page)
    page.locator("#id_steps-2-kind").select_option("branch")
    expect(page.get_by_role("button", name="+ Add path")).to_be_visible()
    # Each button is a round trip: wait for its answer before the next one.
    page.get_by_role("button", name="+ Add path").click()
    expect(page.locator("#steps-2-path-0-type")).to_be_visible()
    page.get_by_role("button", name="+ Add path").click()
    expect(page.locator("#steps-2-path-1-type")).to_be_visible()
    settled(page)
    page.locator("#steps-2-path-0-type").select_option("replied")
    settled(page)
    page.get_by_role("button", name="+ Add a step to path 1").click()
    expect(page.locator("#steps-2-path-0-step-0-message")).to_be_visible()
    settled(page)
    page.locator("#steps-2-path-0-step-0-message").fill("Thanks for writing back")
    page.locator("#steps-2-path-0-step-0-delay").fill("0")
    page.locator("#steps-2-path-1-type").select_option("no_reply_for")
    page.locator("#steps-2-path-1-hours").fill("48")
    # What was typed survives every round trip.
    expect(page.locator("#steps-1-rule-0-tag")).to_have_value("customer")
    expect(page.locator("#id_steps-1-message")).to_have_value("Checking in")

    page.get_by_role("button", name="Create campaign").click()
    expect(page.locator("#steps-2-paths_errors")).to_contain_text("A branch needs a Default path")
    expect(page.locator("#steps-2-path-0-step-0-message")).to_have_value("Thanks for writing back")
    assert not Campaign.objects.exists()

    page.get_by_role("button", name="+ Add path").click()
    expect(page.locator("#steps-2-path-2-type")).to_be_visible()
    settled(page)
    page.locator("#steps-2-path-2-type").select_option("default")
    settled(page)
    screenshot("campaign-form-branches.png")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_text("Campaign “Branching outreach” saved.")).to_be_visible()
    expect(page.get_by_role("heading", name="Branch at step 3")).to_be_visible()

    campaign = Campaign.objects.get(workspace=acme)
    steps = list(campaign.steps.order_by("position"))
    assert [(s.kind, s.message) for s in steps] == [
        ("message", "Hi {firstName}"),
        ("message", "Checking in"),
        ("branch", ""),
        ("message", "Thanks for writing back"),
    ]
    assert steps[1].stop_rules[0]["tag"] == "customer"
    assert [c["type"] for c in steps[2].branch_conditions] == [
        "replied",
        "no_reply_for",
        "default",
    ]
