from datetime import timedelta

from django.utils import timezone

from leads.models import Lead
from messaging.models import Message


def test_quick_send_page_renders_with_debounced_check(acme, alice_client):
    html = alice_client.get("/quick-send/").content.decode()
    # `input` also catches paste and autofill; no `change`, so leaving the field
    # does not check again; a newer check replaces one still in flight.
    assert 'hx-trigger="input changed delay:500ms"' in html
    assert 'hx-sync="this:replace"' in html
    assert 'id="no-active-line"' in html


def test_check_shows_available_and_unavailable(acme, alice_client, make_line):
    make_line(acme)
    html = alice_client.post("/quick-send/check/", {"recipient": "+1 202 555 0124"}).content
    assert b'data-state="available"' in html
    html = alice_client.post("/quick-send/check/", {"recipient": "+12025550123"}).content
    assert b'data-state="unavailable"' in html and b"SMS/email" in html


def test_check_without_a_line_or_with_bad_input(acme, alice_client):
    html = alice_client.post("/quick-send/check/", {"recipient": "+12025550124"}).content
    assert b'data-state="no_active_line"' in html and b'href="/lines/"' in html
    html = alice_client.post("/quick-send/check/", {"recipient": "12"}).content
    assert b'data-state="invalid"' in html
    html = alice_client.post("/quick-send/check/", {"recipient": ""}).content
    assert b'data-state="empty"' in html


def test_sending_creates_a_message_and_links_to_it(acme, alice_client, make_line):
    make_line(acme)
    response = alice_client.post(
        "/quick-send/",
        {"recipient": "+12025550124", "recipient_name": "Zoe", "channel": "imessage",
         "message": "Hi {firstName|there}", "when": "now"},
    )  # fmt: skip
    assert response.status_code == 302
    message = Message.objects.get(workspace=acme)
    assert response["Location"] == f"/quick-send/{message.pk}/"
    assert message.recipient_phone == "+12025550124"
    assert Lead.objects.get(pk=message.lead_id).lists.filter(name="Quick Sends").exists()
    html = alice_client.get(response["Location"]).content.decode()
    assert message.pk in html and f"/api/messages/{message.pk}" in html


def test_scheduling_uses_the_workspace_timezone(acme, alice_client, make_line):
    make_line(acme)
    acme.timezone = "America/New_York"
    acme.save()
    when = (timezone.now() + timedelta(days=2)).astimezone(
        __import__("zoneinfo").ZoneInfo("America/New_York")
    )
    alice_client.post(
        "/quick-send/",
        {"recipient": "ann@icloud.com", "channel": "imessage", "message": "Later",
         "when": "later", "scheduled_for": when.strftime("%Y-%m-%dT%H:%M")},
    )  # fmt: skip
    message = Message.objects.get(workspace=acme)
    assert message.status == "scheduled"
    assert abs((message.scheduled_date - when).total_seconds()) < 60


def test_errors_show_in_place_and_keep_input(acme, alice_client):
    response = alice_client.post(
        "/quick-send/",
        {"recipient": "not-an-address", "channel": "sms", "message": "", "when": "later",
         "attachment_url": "ftp://x"},
    )  # fmt: skip
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter a valid phone number or email address." in html
    assert 'value="not-an-address"' in html
    assert "Write a message or add an attachment." in html
    assert "Choose when to send it." in html
    assert not Message.objects.exists()


def test_service_errors_are_shown(acme, alice_client):
    response = alice_client.post(
        "/quick-send/",
        {"recipient": "+12025550124", "channel": "imessage", "message": "Hi", "when": "now"},
    )
    assert response.status_code == 400
    assert "No active lines" in response.content.decode()
    assert not Message.objects.exists()


def test_another_workspaces_message_is_404(acme, globex, alice_client, make_line):
    make_line(globex)
    from messaging.services import message_submit

    message = message_submit(workspace=globex, body="x", recipient_phone="+12025550124").message
    assert alice_client.get(f"/quick-send/{message.pk}/").status_code == 404


def _result(client, message):
    return client.get(f"/quick-send/{message.pk}/", HTTP_HX_REQUEST="true").content.decode()


def test_the_result_stops_polling_once_the_status_is_settled(acme, alice_client):
    now = timezone.now()
    polls = 'hx-trigger="every 2s"'
    message = Message.objects.create(
        workspace=acme, recipient_phone="+12025550124", body="Hi", status="pending"
    )
    assert polls in _result(alice_client, message)
    # An email stops at sent: it has no delivery receipts.
    Message.objects.filter(pk=message.pk).update(
        message_type="email", recipient_email="ann@example.com", status="sent", sent_at=now
    )
    assert polls not in _result(alice_client, message)
    # A text may still get its receipt for a while, then the page stops asking.
    for message_type in ("sms", "imessage"):
        Message.objects.filter(pk=message.pk).update(message_type=message_type, sent_at=now)
        assert polls in _result(alice_client, message)
        Message.objects.filter(pk=message.pk).update(sent_at=now - timedelta(minutes=3))
        html = _result(alice_client, message)
        assert polls not in html and "No delivery receipt yet" in html
    Message.objects.filter(pk=message.pk).update(status="delivered", sent_at=now)
    assert polls not in _result(alice_client, message)


def test_an_email_subject_with_a_line_break_is_refused(acme, alice_client):
    response = alice_client.post(
        "/quick-send/",
        {"recipient": "d@example.com", "channel": "email", "subject": "Hi\r\nBcc: x@example.com",
         "message": "Hello", "when": "now"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "must not contain line breaks" in response.content.decode()
    assert not Message.objects.exists()
