import pytest
from playwright.sync_api import expect

from campaigns.services import StepSpec, campaign_create
from leads.models import LeadList
from leads.services import lead_import
from lines.services import line_create
from messaging.models import Message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def admin_page(page, live_server, django_user_model):
    django_user_model.objects.create_superuser("root", "root@tuco.test", "root-password")
    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("root-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    return page


@pytest.fixture
def data(acme):
    prospects = LeadList.objects.create(workspace=acme, name="Prospects")
    lead_import(
        workspace=acme,
        rows=[
            {"firstName": "Dana", "phone": "+12025551000"},
            {"firstName": "Eve", "email": "eve@example.com"},
        ],
        lead_list=prospects,
    )
    # Relay URLs nobody answers: registering their webhooks fails quietly.
    line_create(
        workspace=acme, server_url="http://127.0.0.1:9/one", relay_password="pw", first_name="Ava"
    )
    line_create(
        workspace=acme,
        server_url="http://127.0.0.1:9/two",
        relay_password="pw",
        first_name="Bea",
        is_active=False,
    )
    campaign_create(workspace=acme, name="Spring", steps=[StepSpec(message="Hi")])
    campaign_create(workspace=acme, name="Autumn", steps=[StepSpec(message="Hello")])
    Message.objects.create(
        workspace=acme, recipient_phone="+12025551000", body="Hello Dana", status="sent"
    )
    Message.objects.create(
        workspace=acme,
        recipient_email="eve@example.com",
        body="Hello Eve",
        status="failed",
        message_type="email",
    )


def rows(page):
    return page.locator("#result_list tbody tr")


def search(page, text):
    page.locator("#searchbar").fill(text)
    page.locator("#searchbar").press("Enter")


def test_changelists_load_and_search_and_filter(admin_page, live_server, data, screenshot):
    page = admin_page
    filters = page.locator("#changelist-filter")

    page.goto(f"{live_server.url}/admin/lines/line/")
    expect(rows(page)).to_have_count(2)
    search(page, "Bea")
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("127.0.0.1:9/two")
    page.goto(f"{live_server.url}/admin/lines/line/")
    filters.get_by_role("link", name="No").first.click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("Bea")

    page.goto(f"{live_server.url}/admin/leads/lead/")
    expect(rows(page)).to_have_count(2)
    search(page, "Dana")
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("+12025551000")

    page.goto(f"{live_server.url}/admin/messaging/message/")
    expect(rows(page)).to_have_count(2)
    filters.get_by_role("link", name="Failed").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("eve@example.com")
    # Search and filter combine: Dana's message was sent, not failed.
    search(page, "+12025551000")
    expect(page.locator("#result_list")).to_have_count(0)
    expect(page.locator("#changelist")).to_contain_text("0 results")
    page.goto(f"{live_server.url}/admin/messaging/message/?q=%2B12025551000")
    expect(rows(page)).to_have_count(1)

    page.goto(f"{live_server.url}/admin/campaigns/campaign/")
    expect(rows(page)).to_have_count(2)
    search(page, "Autumn")
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("Autumn")
    page.goto(f"{live_server.url}/admin/campaigns/campaign/")
    filters.get_by_role("link", name="Draft").click()
    expect(rows(page)).to_have_count(2)
    screenshot("admin.png")
