import re

import pytest
from playwright.sync_api import expect

from leads.models import Lead
from leads.services import lead_import
from messaging.models import Message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login(page, live_server, alice, screenshot):
    page.goto(f"{live_server.url}/leads/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/leads/"))
    page.get_by_label("Email").fill("alice@acme.test")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct")
    expect(page.get_by_label("Email")).to_have_value("alice@acme.test")
    screenshot("login.png")
    page.get_by_label("Password").fill("alice-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/leads/")
    expect(page.get_by_role("heading", name="Leads")).to_be_visible()


def test_import_a_csv(signed_in, live_server, acme, make_line, tmp_path, settings, screenshot):
    settings.DATA_DIR = tmp_path
    make_line(acme)
    page = signed_in
    csv = tmp_path / "fair.csv"
    csv.write_text(
        "First Name,Last Name,Phone,Email,Company\n"
        "Ann,Lee,(202) 555-0102,ann@example.com,Initech\n"
        "Ben,Ray,202-555-0103,,Hooli\n"
        "Cat,Ng,not a phone,,\n"
        "Dan,Oz,202 555 0104,dan@icloud.com,Globex\n"
    )
    page.get_by_role("link", name="Import", exact=True).click()
    page.get_by_label("CSV file").set_input_files(str(csv))
    page.get_by_label("Add the leads to").select_option(label="New list…")
    page.get_by_label("New list name").fill("Spring fair")
    page.get_by_role("button", name="Upload and preview").click()

    expect(page.get_by_role("heading", name="Match columns")).to_be_visible()
    expect(page.get_by_label("Lead field for column Phone")).to_have_value("phone")
    expect(page.get_by_label("Lead field for column Company")).to_have_value("company_name")
    expect(page.get_by_role("cell", name="(202) 555-0102")).to_be_visible()
    screenshot("import.png")
    page.get_by_role("button", name="Import 4 rows").click()

    progress = page.locator("#import-progress")
    expect(progress).to_have_attribute("data-import-status", "done")
    expect(progress).to_contain_text("100%")
    expect(page.locator("#import-saved")).to_have_text("3")
    expect(page.locator("#import-invalid")).to_have_text("1")
    expect(progress.locator("tbody tr")).to_contain_text("4phoneInvalid phone number")
    screenshot("import-result.png")
    page.get_by_role("link", name="View the list").click()
    expect(page.get_by_role("cell", name="Ann Lee Initech")).to_be_visible()
    assert Lead.objects.filter(workspace=acme, lists__name="Spring fair").count() == 3


def test_bulk_check_with_progress(signed_in, live_server, acme, make_line, screenshot):
    make_line(acme)
    rows = [{"firstName": f"Lead{i}", "phone": f"+1202555{i:04d}"} for i in range(8)]
    lead_import(workspace=acme, rows=rows)
    Lead.objects.filter(workspace=acme).update(availability_status="")
    page = signed_in
    page.reload()
    expect(page.locator("#no-active-line")).to_have_count(0)
    expect(page.locator("td.status-cell").first).to_contain_text("Not checked")

    # One row, checked on its own: the row is swapped in place.
    row = page.locator("tr", has_text="Lead2")
    row.get_by_role("button", name=re.compile("Check availability")).click()
    expect(page.locator("tr", has_text="Lead2").locator(".status-cell")).to_contain_text(
        "Available"
    )

    page.get_by_label("Select all leads on this page").check()
    expect(page.locator("[data-selection-count]")).to_have_text("8 selected")
    page.locator(".toolbar").get_by_role("button", name="Check Availability").click()
    progress = page.locator("#bulk-progress")
    expect(progress).to_have_attribute("data-job-status", "done")
    expect(progress.locator(".job-percent")).to_have_text("100%")
    expect(progress).to_contain_text("8 of 8 leads")
    # The table refreshed itself with the results.
    expect(page.locator("td.status-cell", has_text="Not checked")).to_have_count(0)
    expect(page.locator("td.status-cell", has_text="Unavailable")).to_have_count(4)
    screenshot("leads.png")


def test_no_active_line_prompt(signed_in, live_server, acme):
    lead_import(workspace=acme, rows=[{"firstName": "Solo", "phone": "+12025550100"}])
    page = signed_in
    page.reload()
    prompt = page.locator("#no-active-line")
    expect(prompt).to_contain_text("No Active Line")
    expect(page.locator(".status-cell")).to_contain_text("No active line")
    prompt.get_by_role("link").click()
    expect(page).to_have_url(f"{live_server.url}/lines/")


def test_quick_send_checks_as_you_type(signed_in, live_server, acme, make_line, screenshot):
    make_line(acme)
    page = signed_in
    page.get_by_role("link", name="Quick Send").first.click()
    checks = []
    page.on("request", lambda r: checks.append(r) if r.url.endswith("/quick-send/check/") else None)

    recipient = page.get_by_label("To", exact=True)
    status = page.locator("#recipient-status")
    recipient.press_sequentially("+1 202 555 0124", delay=40)
    # Nothing is asked while typing; the icon comes once typing stops.
    assert len(checks) == 0
    expect(status.locator("[data-state=available]")).to_be_visible()
    expect(status).to_contain_text("iMessage available")
    assert len(checks) == 1  # debounced: one check for the whole burst of typing

    recipient.fill("")
    recipient.press_sequentially("+1 202 555 0123", delay=40)
    expect(status.locator("[data-state=unavailable]")).to_be_visible()
    expect(status).to_contain_text("SMS/email")

    # A paste (or autofill) sets the value in one go: no key events, still checked.
    count = len(checks)
    recipient.fill("+12025550124")
    expect(status.locator("[data-state=available]")).to_be_visible()
    assert len(checks) == count + 1
    # Leaving the field does not check again.
    page.get_by_label("Name").fill("Zoe")
    page.wait_for_timeout(700)
    assert len(checks) == count + 1
    page.get_by_label("Message").fill("Hi {firstName|there}, see you at the fair!")
    screenshot("quick-send.png")
    page.get_by_role("button", name="Send").click()

    expect(page.get_by_role("heading", name="Message queued")).to_be_visible()
    message = Message.objects.get(workspace=acme)
    expect(page.locator("#message-status")).to_contain_text(message.pk)
    expect(page.get_by_role("link", name=f"GET /api/messages/{message.pk}")).to_be_visible()


def test_create_an_api_key_shown_once(signed_in, live_server, acme, screenshot):
    page = signed_in
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Key name").fill("Zapier")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-value")
    expect(secret).to_have_text(re.compile(r"^tuco_sk_"))
    raw = secret.text_content()
    expect(page.get_by_role("cell", name="Zapier", exact=True)).to_be_visible()
    screenshot("settings.png")
    # A reload neither shows the key again nor creates another one.
    page.reload()
    expect(page.locator("#new-key-value")).to_have_count(0)
    assert raw not in page.content()
    expect(page.get_by_role("cell", name="Zapier", exact=True)).to_have_count(1)
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke key Zapier").click()
    expect(page.locator("tr", has_text="Zapier")).to_contain_text("Revoked")
