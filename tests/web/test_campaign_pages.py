from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Campaign, Enrollment
from campaigns.services import StepSpec, campaign_create
from leads.models import Lead, LeadList
from leads.services import lead_import
from lines.services import line_create
from messaging.models import FallbackConfig, Message

STEPS = [StepSpec(message="Hi {firstName}", delay=0, delay_unit="minutes")]


def make_campaign(workspace, name="Spring", **kwargs):
    kwargs.setdefault("steps", STEPS)
    return campaign_create(workspace=workspace, name=name, **kwargs)


def make_list(workspace, count=3, name="Prospects"):
    lead_list = LeadList.objects.create(workspace=workspace, name=name)
    rows = [{"firstName": f"Lead{i}", "phone": f"+1202555{1000 + i:04d}"} for i in range(count)]
    lead_import(workspace=workspace, rows=rows, lead_list=lead_list)
    return lead_list


def make_line(workspace, health="healthy", **fields):
    line = line_create(
        workspace=workspace,
        server_url=fields.pop("server_url", "https://mac.acme.test"),
        relay_password="pw",
        **fields,
    )
    line.health_status = health
    line.save(update_fields=["health_status"])
    return line


def step_data(steps, prefix="steps"):
    data = {f"{prefix}-TOTAL_FORMS": str(len(steps)), f"{prefix}-INITIAL_FORMS": str(len(steps))}
    for i, step in enumerate(steps):
        for key, value in step.items():
            data[f"{prefix}-{i}-{key}"] = value
    return data


def step(message, delay="0", unit="days", channel="imessage", fallback=""):
    return {
        "message": message,
        "delay": delay,
        "delay_unit": unit,
        "message_type": channel,
        "sms_fallback_message": fallback,
    }


def campaign_data(steps, **overrides):
    data = {
        "name": "Spring outreach",
        "lead_list": "",
        "timezone": "America/New_York",
        "send_window_start": "09:00",
        "send_window_end": "17:00",
        "allowed_days": ["1", "2", "3", "4", "5"],
        "reply_behavior": "stop",
        "send_immediately": "on",
        **step_data(steps),
    }
    data.update(overrides)
    return data


# List


def test_list_shows_each_campaigns_stats(acme, alice_client):
    campaign = make_campaign(acme, name="Spring")
    for status in ("sent", "delivered", "failed", "scheduled"):
        Message.objects.create(workspace=acme, campaign_id=campaign.pk, status=status)
    page = alice_client.get("/campaigns/").content.decode()
    row = page.split(f'id="campaign-{campaign.pk}"')[1].split("</tr>")[0]
    assert "<strong>4</strong> messages" in row
    assert "<strong>2</strong> sent" in row
    assert "<strong>1</strong> delivered" in row
    assert "<strong>1</strong> failed" in row
    assert "1 waiting" in row


def test_list_runs_a_fixed_number_of_queries(acme, alice_client, django_assert_num_queries):
    line = make_line(acme)
    make_campaign(acme, line_ids=[line.pk])
    alice_client.get("/campaigns/")
    # Session, user, memberships, count, campaigns, steps, lines, message stats, replies.
    with CaptureQueriesContext(connection) as one:
        alice_client.get("/campaigns/")
    for i in range(6):
        campaign = make_campaign(acme, name=f"C{i}", line_ids=[line.pk])
        Message.objects.create(workspace=acme, campaign_id=campaign.pk, status="sent")
    with django_assert_num_queries(len(one.captured_queries)):
        response = alice_client.get("/campaigns/")
    assert response.content.decode().count('id="campaign-') == 7


def test_pages_never_show_another_workspaces_campaigns(acme, globex, alice_client):
    theirs = make_campaign(globex, name="Globex secret")
    assert b"Globex secret" not in alice_client.get("/campaigns/").content
    assert alice_client.get(f"/campaigns/{theirs.pk}/").status_code == 404
    assert alice_client.get(f"/campaigns/{theirs.pk}/edit/").status_code == 404
    assert alice_client.post(f"/campaigns/{theirs.pk}/start/").status_code == 404
    assert alice_client.get("/campaigns/not-an-id/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "draft"


def test_form_offers_only_this_workspaces_lists_and_lines(acme, globex, alice_client):
    make_list(acme, name="Acme list")
    make_list(globex, name="Globex list")
    make_line(acme, first_name="Ava")
    theirs = make_line(globex, first_name="Gloria", server_url="https://globex.test")
    page = alice_client.get("/campaigns/new/").content.decode()
    assert "Acme list" in page and "Ava" in page
    assert "Globex list" not in page and "Gloria" not in page
    # A foreign line id posted anyway is refused.
    response = alice_client.post("/campaigns/new/", campaign_data([step("Hi")], lines=[theirs.pk]))
    assert response.status_code == 400
    assert not Campaign.objects.filter(workspace=acme).exists()


# Create and edit


def configure_twilio(workspace):
    FallbackConfig.objects.create(
        workspace=workspace,
        enabled=True,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="twilio-token",
        twilio_from_number="+15005550006",
    )


def test_it_creates_a_campaign_with_steps_lines_and_schedule(acme, alice_client):
    configure_twilio(acme)
    lead_list = make_list(acme)
    first, second = make_line(acme), make_line(acme, server_url="https://mac2.acme.test")
    data = campaign_data(
        [step("Hi {firstName}"), step("Following up", delay="2", fallback="Text: following up")],
        lead_list=lead_list.pk,
        lines=[second.pk],
        reply_behavior="continue",
    )
    response = alice_client.post("/campaigns/new/", data)
    assert response.status_code == 302
    campaign = Campaign.objects.get(workspace=acme)
    assert response["Location"] == f"/campaigns/{campaign.pk}/"
    assert campaign.lead_list == lead_list
    assert list(campaign.lines.all()) == [second]
    assert (campaign.timezone, campaign.send_window_start, campaign.send_window_end) == (
        "America/New_York",
        "09:00",
        "17:00",
    )
    assert campaign.allowed_days == [1, 2, 3, 4, 5]
    assert campaign.reply_behavior == "continue"
    steps = list(campaign.steps.order_by("position"))
    assert [(s.message, s.delay, s.sms_fallback_message) for s in steps] == [
        ("Hi {firstName}", 0, ""),
        ("Following up", 2, "Text: following up"),
    ]
    assert first not in campaign.lines.all()


def test_step_errors_show_in_place_and_keep_the_input(acme, alice_client):
    data = campaign_data(
        [step("Hello there"), step("   ", delay="-3")],
        name="Keep me",
        send_window_end="",
    )
    response = alice_client.post("/campaigns/new/", data)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_steps-1-message_errors"' in page
    assert "A step needs a message." in page
    assert 'id="id_steps-1-delay_errors"' in page
    assert "Give both ends of the send window, or neither." in page
    assert 'value="Keep me"' in page
    assert "Hello there</textarea>" in page
    assert not Campaign.objects.exists()


def test_an_sms_fallback_without_twilio_is_refused_on_its_step(acme, alice_client):
    data = campaign_data([step("Hello"), step("Again", delay="1", fallback="Text me")])
    response = alice_client.post("/campaigns/new/", data)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_steps-1-sms_fallback_message_errors"' in page
    assert "An SMS fallback needs Twilio" in page
    assert "Text me</textarea>" in page
    assert not Campaign.objects.exists()


def test_step_buttons_add_move_and_remove_without_saving(acme, alice_client):
    data = campaign_data([step("First"), step("Second", delay="3")], name="Draft name")
    response = alice_client.post("/campaigns/new/", {**data, "step_op": "up:1"})
    assert response.status_code == 200
    page = response.content.decode()
    assert page.index("Second</textarea>") < page.index("First</textarea>")
    assert 'value="Draft name"' in page
    assert "errorlist" not in page

    response = alice_client.post("/campaigns/new/", {**data, "step_op": "add"})
    page = response.content.decode()
    assert 'name="steps-TOTAL_FORMS" value="3"' in page
    assert "Step 3" in page

    response = alice_client.post("/campaigns/new/", {**data, "step_op": "remove:0"})
    page = response.content.decode()
    assert 'name="steps-TOTAL_FORMS" value="1"' in page
    assert "First</textarea>" not in page and "Second</textarea>" in page
    assert not Campaign.objects.exists()


def test_it_edits_a_draft_campaign_including_its_steps(acme, alice_client):
    campaign = make_campaign(acme, name="Old")
    page = alice_client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert 'value="Old"' in page and "Hi {firstName}</textarea>" in page
    data = campaign_data([step("New one"), step("New two", delay="1", unit="hours")], name="New")
    response = alice_client.post(f"/campaigns/{campaign.pk}/edit/", data)
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "New"
    assert [s.message for s in campaign.steps.order_by("position")] == ["New one", "New two"]


def test_a_running_campaigns_steps_can_be_edited(acme, alice_client):
    lead_list = make_list(acme, count=1)
    make_line(acme)
    campaign = make_campaign(acme, list_id=lead_list.pk)
    alice_client.post(f"/campaigns/{campaign.pk}/start/")
    page = alice_client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert "changes apply to each lead from the first step it has not reached yet" in page
    assert "Hi {firstName}</textarea>" in page
    data = campaign_data([step("Hi {firstName}"), step("Added", delay="1")], name="Renamed")
    response = alice_client.post(f"/campaigns/{campaign.pk}/edit/", data)
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Renamed"
    assert [s.message for s in campaign.steps.order_by("position")] == ["Hi {firstName}", "Added"]
    # The lead in the sequence gets the added step.
    assert list(
        Message.objects.filter(campaign_id=campaign.pk)
        .order_by("step_index")
        .values_list("body", flat=True)
    ) == ["Hi {firstName}", "Added"]


# Actions


def test_starting_without_a_healthy_line_explains_why(acme, alice_client):
    make_line(acme, health="down")
    campaign = make_campaign(acme, list_id=make_list(acme).pk)
    response = alice_client.post(f"/campaigns/{campaign.pk}/start/", follow=True)
    assert b"No healthy line for this campaign" in response.content
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_start_pause_resume_and_retry(acme, alice_client):
    make_line(acme)
    campaign = make_campaign(acme, list_id=make_list(acme, count=3).pk)
    page = alice_client.post(f"/campaigns/{campaign.pk}/start/", follow=True).content.decode()
    assert "Campaign started." in page
    campaign.refresh_from_db()
    assert campaign.status == "active"
    assert Enrollment.objects.filter(campaign=campaign).count() == 3
    assert "Lead0" in page and "Lead2" in page

    alice_client.post(f"/campaigns/{campaign.pk}/pause/")
    campaign.refresh_from_db()
    assert campaign.status == "paused"
    page = alice_client.post(f"/campaigns/{campaign.pk}/pause/", follow=True).content.decode()
    assert "only an active campaign can be paused" in page
    alice_client.post(f"/campaigns/{campaign.pk}/resume/")
    campaign.refresh_from_db()
    assert campaign.status == "active"

    Message.objects.filter(campaign_id=campaign.pk).update(status="failed", error_message="Boom")
    page = alice_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Retry failed (3)" in page
    page = alice_client.post(
        f"/campaigns/{campaign.pk}/retry_failed/", follow=True
    ).content.decode()
    assert "Failed messages will be sent again." in page
    assert not Message.objects.filter(campaign_id=campaign.pk, status="failed").exists()


def test_unknown_action_is_not_found(acme, alice_client):
    campaign = make_campaign(acme)
    assert alice_client.post(f"/campaigns/{campaign.pk}/explode/").status_code == 404


# Detail


def test_detail_shows_each_leads_progress_and_sends_per_day(acme, alice_client):
    make_line(acme)
    campaign = make_campaign(acme, list_id=make_list(acme, count=2).pk)
    alice_client.post(f"/campaigns/{campaign.pk}/start/")
    first = Lead.objects.get(first_name="Lead0")
    now = timezone.now()
    Message.objects.filter(campaign_id=campaign.pk, lead=first).update(
        status="delivered", sent_at=now
    )
    Message.objects.create(
        workspace=acme, campaign_id=campaign.pk, status="sent", sent_at=now - timedelta(days=1)
    )
    Campaign.objects.filter(pk=campaign.pk).update(started_at=now - timedelta(days=3))
    page = alice_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    row = page.split(f'id="enrollment-{first.enrollments.get().pk}"')[1].split("</tr>")[0]
    assert "delivered" in row and "step 1 of 1" in row
    assert 'class="chart"' in page
    assert page.count('class="bar"') == 14
    assert 'title="' + (now - timedelta(days=1)).strftime("%b %-d") + ': 1 sent"' in page
    assert "2 sent" in page


def test_detail_paginates_enrollments_with_fixed_queries(
    acme, alice_client, django_assert_num_queries
):
    make_line(acme)
    small = make_campaign(acme, name="Small", list_id=make_list(acme, count=1, name="S").pk)
    big = make_campaign(acme, name="Big", list_id=make_list(acme, count=60, name="B").pk)
    alice_client.post(f"/campaigns/{small.pk}/start/")
    alice_client.post(f"/campaigns/{big.pk}/start/")
    alice_client.get(f"/campaigns/{small.pk}/")  # warm the caches (the lines banner)
    with CaptureQueriesContext(connection) as one:
        alice_client.get(f"/campaigns/{small.pk}/")
    with django_assert_num_queries(len(one.captured_queries)):
        page = alice_client.get(f"/campaigns/{big.pk}/").content.decode()
    assert page.count('id="enrollment-') == 50
    assert "1–50 of 60" in page
    page2 = alice_client.get(f"/campaigns/{big.pk}/?page=2").content.decode()
    assert page2.count('id="enrollment-') == 10


@pytest.mark.parametrize("path", ["/campaigns/", "/campaigns/new/"])
def test_anonymous_visitors_are_sent_to_login(db, path):
    from django.test import Client

    assert Client().get(path)["Location"] == f"/login/?next={path}"


def test_a_step_delay_is_held_to_its_unit_limit(acme, alice_client):
    data = campaign_data([step("Hello"), step("Later", delay="400")])
    response = alice_client.post("/campaigns/new/", data)
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_steps-1-delay_errors"' in page
    assert "At most 365 days" in page
    assert not Campaign.objects.exists()
