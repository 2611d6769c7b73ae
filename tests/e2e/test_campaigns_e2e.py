import time

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from campaigns.models import Campaign
from campaigns.services import campaigns_tick
from leads.models import LeadList
from leads.services import lead_import
from messaging.dispatch import dispatch_due
from messaging.models import Message
from tests.lines.relay_fixtures import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
needs_postgres = pytest.mark.skipif(
    not django_settings.IS_POSTGRES,
    reason="relay callbacks reach the live server while the test and the browser use the "
    "database too; in-memory SQLite's shared cache fails that with 'table is locked'",
)


def nav(page, name: str):
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def run_worker_until(condition, timeout: float = 15.0) -> None:
    """Do what beat and the worker would: pacing ticks and dispatch, until `condition()`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not get there in time")
        campaigns_tick()
        dispatch_due(limit=100)
        time.sleep(0.1)


@needs_postgres
def test_create_and_start_a_campaign_that_sends(
    signed_in, live_server, acme, relay, settings, screenshot
):
    # Relay callbacks (delivered, replies) must reach this live server.
    settings.SITE_URL = live_server.url
    prospects = LeadList.objects.create(workspace=acme, name="Prospects")
    rows = [{"firstName": f"Lead{i}", "phone": f"+1202555{1000 + 2 * i:04d}"} for i in range(3)]
    lead_import(workspace=acme, rows=rows, lead_list=prospects)
    page = signed_in

    # A line on the simulator, through the Lines page.
    nav(page, "Lines").click()
    page.get_by_role("link", name="Add line").click()
    page.get_by_label("Server URL").fill(relay.url)
    page.get_by_label("Relay password").fill("wrong")
    page.get_by_label("Phone (iMessage handle)").fill("not a phone")
    page.get_by_label("First name").fill("Ava")
    for label in ("Gap between sends (s)", "Gap per recipient (s)", "Gap between checks (s)"):
        page.get_by_label(label).fill("0")
    page.get_by_role("button", name="Add line").click()
    expect(page.locator("#id_phone_errors")).to_contain_text("not a valid phone number")
    expect(page.get_by_label("First name")).to_have_value("Ava")
    screenshot("line-form.png")
    page.get_by_label("Phone (iMessage handle)").fill("+1 202 555 0100")
    page.get_by_label("Relay password").fill(PASSWORD)
    page.get_by_role("button", name="Add line").click()
    expect(page.get_by_text("Line Ava added.")).to_be_visible()
    page.get_by_role("button", name="Check Ava now").click()
    expect(page.locator("td.health-cell")).to_contain_text("Healthy")
    expect(page.locator("td.health-cell")).to_contain_text("just now")
    screenshot("lines.png")

    # A draft campaign: two steps, reordered, one removed, then saved.
    nav(page, "Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name").fill("Spring outreach")
    page.get_by_label("Lead list").select_option(label="Prospects")
    page.locator("#id_steps-0-message").fill("Scratch that")
    page.get_by_role("button", name="+ Add step").click()
    page.locator("#id_steps-1-message").fill("Hi {firstName}, spring is here!")
    page.locator("#id_steps-1-delay").fill("0")
    page.get_by_role("button", name="Move step 2 up").click()
    expect(page.locator("#id_steps-0-message")).to_have_value("Hi {firstName}, spring is here!")
    page.get_by_role("button", name="Remove step 2").click()
    expect(page.locator(".step")).to_have_count(1)
    expect(page.get_by_label("Name")).to_have_value("Spring outreach")
    page.get_by_label("Ava (+12025550100)").check()
    page.get_by_label("Send from").fill("09:00")
    screenshot("campaign-form.png")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.locator("#id_send_window_end_errors")).to_contain_text("both ends")
    expect(page.get_by_label("Name")).to_have_value("Spring outreach")
    page.get_by_label("Send from").fill("")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_text("Campaign “Spring outreach” saved.")).to_be_visible()
    campaign = Campaign.objects.get(workspace=acme)
    assert [s.message for s in campaign.steps.all()] == ["Hi {firstName}, spring is here!"]

    # Start it and let the worker send through the simulator.
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("Campaign started.")).to_be_visible()
    run_worker_until(lambda: len(relay.sent) >= 3)
    assert sorted(m["text"] for m in relay.sent) == [
        "Hi Lead0, spring is here!",
        "Hi Lead1, spring is here!",
        "Hi Lead2, spring is here!",
    ]
    run_worker_until(
        lambda: Message.objects.filter(campaign_id=campaign.pk, status="delivered").count() == 3
    )
    page.reload()
    expect(page.locator("dl.summary")).to_contain_text("Delivered3")
    expect(page.locator("tr", has_text="Lead1")).to_contain_text("delivered")
    expect(page.locator(".chart-axis")).to_contain_text("3 sent")
    screenshot("campaign-detail.png")

    nav(page, "Campaigns").click()
    row = page.locator(f"#campaign-{campaign.pk}")
    expect(row).to_contain_text("3 sent")
    screenshot("campaigns.png")


def test_starting_without_a_healthy_line_shows_why(signed_in, live_server, acme, make_line):
    line = make_line(acme)
    line.health_status = "down"
    line.save(update_fields=["health_status"])
    page = signed_in
    page.goto(f"{live_server.url}/campaigns/new/")
    page.get_by_label("Name").fill("Nowhere to send")
    page.locator("#id_steps-0-message").fill("Hello")
    page.get_by_role("button", name="Create campaign").click()
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#flash")).to_contain_text("No healthy line for this campaign")
    expect(page.locator("h1")).to_contain_text("Draft")
