import time

import pytest
import requests
from django.conf import settings as django_settings
from playwright.sync_api import expect

from campaigns.services import StepSpec, campaign_create, campaign_start, campaigns_tick
from leads.models import LeadList
from leads.services import lead_import
from messaging.dispatch import dispatch_due
from messaging.models import Conversation, InboundMessage, Message
from tests.lines.relay_fixtures import PASSWORD

needs_postgres = pytest.mark.skipif(
    not django_settings.IS_POSTGRES,
    reason="relay callbacks reach the live server while the test and the browser use the "
    "database too; in-memory SQLite's shared cache fails that with 'table is locked'",
)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    needs_postgres,
]


def wait_until(condition, timeout: float = 15.0, work=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        if work:
            work()
        time.sleep(0.1)


def run_worker():
    campaigns_tick()
    dispatch_due(limit=100)


def relay_inbound(relay, sender: str, text: str) -> None:
    """A lead texts the line: the simulator posts it to the line's callback URL."""
    response = requests.post(
        f"{relay.url}/sim/inbound",
        params={"password": PASSWORD},
        json={"from": sender, "text": text},
        timeout=5,
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def contacted(acme, make_line, live_server, settings, relay):
    """Two leads who got a campaign's first message from line Ava."""
    settings.SITE_URL = live_server.url
    prospects = LeadList.objects.create(workspace=acme, name="Prospects")
    lead_import(
        workspace=acme,
        rows=[
            {"firstName": "Dana", "lastName": "Reyes", "phone": "+12025551000"},
            {"firstName": "Eli", "lastName": "Park", "phone": "+12025551002"},
        ],
        lead_list=prospects,
    )
    # Created after SITE_URL is set, so its relay webhook points at the live server.
    line = make_line(acme, first_name="Ava", phone="+12025550100", contact_gap_seconds=0)
    line.health_status = "healthy"
    line.save(update_fields=["health_status"])
    wait_until(lambda: any(url.startswith(live_server.url) for url in relay.webhooks))
    campaign = campaign_create(
        workspace=acme,
        name="Spring",
        steps=[StepSpec(message="Hi {firstName}, got a minute?")],
        list_id=prospects.pk,
        line_ids=[line.pk],
    )
    campaign_start(workspace=acme, campaign_id=campaign.pk)
    wait_until(lambda: len(relay.sent) >= 2, work=run_worker)
    return line


def test_reply_shows_up_and_is_answered_from_the_same_line(
    signed_in, live_server, acme, relay, contacted, screenshot
):
    relay_inbound(relay, "+12025551000", "Sure, who is this?")
    relay_inbound(relay, "+12025551000", "Hello?")
    wait_until(lambda: InboundMessage.objects.filter(workspace=acme).count() == 2)
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Unibox").click()
    dana = page.locator("#conversations li", has_text="Dana Reyes")
    expect(dana.get_by_label("2 unread")).to_be_visible()
    expect(dana).to_contain_text("Hello?")

    dana.get_by_role("link").click()
    thread = page.locator("#thread")
    expect(thread.locator(".msg-outbound")).to_contain_text("Hi Dana, got a minute?")
    expect(thread.locator(".msg-outbound [data-status]")).to_have_text("delivered")
    expect(thread.locator(".msg-inbound")).to_have_count(2)
    # Opening the thread read it.
    expect(
        page.locator("#conversations li", has_text="Dana Reyes").locator(".unread")
    ).to_have_count(0)
    conversation = Conversation.objects.get(workspace=acme, address="+12025551000")
    assert conversation.unread_count == 0

    page.get_by_label("Reply").fill("It's Ava from Acme. Spring offers!")
    page.get_by_role("button", name="Send").click()
    expect(thread.locator(".msg-outbound").last).to_contain_text("It's Ava from Acme")
    expect(page.get_by_label("Reply")).to_have_value("")
    wait_until(lambda: len(relay.sent) == 3, work=run_worker)
    reply = relay.sent[-1]
    assert reply["text"] == "It's Ava from Acme. Spring offers!"
    assert reply["handle"]["address"] == "+12025551000"
    assert Message.objects.get(body__startswith="It's Ava").line == contacted
    # The open thread refreshes itself as the status moves on.
    expect(thread.locator(".msg-outbound").last.locator("[data-status]")).to_have_text(
        "delivered", timeout=20_000
    )
    screenshot("unibox.png")


def test_opt_out_is_marked_and_blocks_replies(signed_in, live_server, acme, relay, contacted):
    relay_inbound(relay, "+12025551002", "STOP")
    wait_until(lambda: InboundMessage.objects.filter(workspace=acme, is_opt_out=True).exists())
    page = signed_in
    page.goto(f"{live_server.url}/unibox/")
    eli = page.locator("#conversations li", has_text="Eli Park")
    expect(eli).to_contain_text("Opted out")
    eli.get_by_role("link").click()
    expect(page.locator("#thread-pane")).to_contain_text("do-not-contact list")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
