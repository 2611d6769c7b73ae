"""Provider callbacks through the test client: relay events by line token, Twilio SMS."""

import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from leads.models import Lead
from lines.models import Line
from messaging.models import Conversation, DoNotContact, InboundMessage, Message, WebhookDelivery

PHONE = "+14155550002"
NOW_MS = int(timezone.now().timestamp() * 1000)


@pytest.fixture
def line(acme):
    return Line.objects.create(workspace=acme, server_url="http://relay.invalid:1234")


@pytest.fixture
def lead(acme):
    return Lead.objects.create(workspace=acme, first_name="Lee", phone=PHONE)


@pytest.fixture
def hook(acme, make_endpoint):
    # Unreachable on purpose: only the outbox rows matter here.
    return make_endpoint(acme, "http://127.0.0.1:9/hook")


def relay(anon, line, event_type, data, capture=None):
    response = anon.post(
        f"/api/relay/{line.webhook_token}", {"type": event_type, "data": data}, format="json"
    )
    assert response.status_code == 200
    return response


def inbound_event(guid="IN-1", text="hello", sender=PHONE, created=NOW_MS):
    return {
        "guid": guid,
        "text": text,
        "isFromMe": False,
        "error": 0,
        "dateCreated": created,
        "dateDelivered": None,
        "dateRead": None,
        "handle": {"address": sender, "service": "iMessage"},
        "chats": [{"guid": f"iMessage;-;{sender}"}],
    }


def outbound_event(message, guid="OUT-1", temp=True, **fields):
    data = {
        "guid": guid,
        "text": message.body,
        "isFromMe": True,
        "error": 0,
        "dateCreated": NOW_MS,
        "dateDelivered": None,
        "dateRead": None,
        "handle": {"address": PHONE, "service": "iMessage"},
    }
    if temp:
        data["tempGuid"] = str(message.temp_guid)
    data.update(fields)
    return data


def our_message(acme, lead, line, status="sending"):
    return Message.objects.create(
        workspace=acme, lead=lead, line=line, body="Hi", recipient_phone=PHONE, status=status
    )


def test_an_unknown_token_is_acknowledged_and_ignored(anon, acme):
    response = anon.post("/api/relay/not-a-token", {"type": "new-message", "data": inbound_event()},
                         format="json")  # fmt: skip
    assert response.status_code == 200
    assert not InboundMessage.objects.exists()


def test_an_inactive_lines_events_are_acknowledged_and_ignored(anon, acme, line):
    Line.objects.filter(pk=line.pk).update(is_active=False)
    stop = inbound_event(text="STOP")
    relay(anon, line, "new-message", stop)
    assert not InboundMessage.objects.exists()
    assert not DoNotContact.objects.filter(workspace=acme).exists()
    Line.objects.filter(pk=line.pk).update(is_active=True)
    relay(anon, line, "new-message", stop)
    assert InboundMessage.objects.count() == 1


def test_the_token_is_stored_encrypted_and_found_by_its_hash(anon, acme, line, lead):
    import hashlib

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_token FROM lines_line WHERE id = %s", [line.pk])
        stored = cursor.fetchone()[0]
    assert line.webhook_token not in stored
    assert line.webhook_token_hash == hashlib.sha256(line.webhook_token.encode()).hexdigest()
    relay(anon, line, "new-message", inbound_event())
    assert InboundMessage.objects.count() == 1


def test_an_old_token_stops_working_when_it_is_rotated(anon, acme, line, lead):
    from lines.services import line_webhook_token_rotate

    old = Line.objects.get(pk=line.pk)
    line_webhook_token_rotate(workspace=acme, line_id=line.pk)
    relay(anon, old, "new-message", inbound_event())
    assert not InboundMessage.objects.exists()
    relay(anon, Line.objects.get(pk=line.pk), "new-message", inbound_event())
    assert InboundMessage.objects.count() == 1


def test_events_for_a_deleted_line_are_acknowledged_and_ignored(anon, acme, line, lead):
    from lines.services import line_delete

    line_delete(workspace=acme, line_id=line.pk)
    relay(anon, line, "new-message", inbound_event())
    assert not InboundMessage.objects.exists()


def test_garbage_events_are_acknowledged(anon, line):
    for body in ({}, {"type": "new-message"}, {"type": "new-message", "data": [1]},
                 {"type": "typing-indicator", "data": {}}):  # fmt: skip
        assert anon.post(f"/api/relay/{line.webhook_token}", body, format="json").status_code == 200
    assert not InboundMessage.objects.exists()


def test_a_duplicate_inbound_webhook_is_stored_once(anon, acme, line, lead, hook):
    relay(anon, line, "new-message", inbound_event())
    relay(anon, line, "new-message", inbound_event())
    assert InboundMessage.objects.count() == 1
    assert Conversation.objects.get(address=PHONE).unread_count == 1
    assert WebhookDelivery.objects.filter(event="message.reply").count() == 1


def test_the_same_guid_in_another_workspace_is_a_different_message(anon, acme, globex, line, lead):
    other = Line.objects.create(workspace=globex, server_url="http://relay2.invalid:1234")
    relay(anon, line, "new-message", inbound_event())
    relay(anon, other, "new-message", inbound_event())
    assert InboundMessage.objects.filter(workspace=acme).count() == 1
    assert InboundMessage.objects.filter(workspace=globex).count() == 1
    # Each workspace has its own lead for the number.
    assert InboundMessage.objects.get(workspace=globex).lead.workspace_id == globex.pk


def test_our_send_is_matched_by_temp_guid_then_by_guid(anon, acme, line, lead, hook):
    message = our_message(acme, lead, line)
    relay(anon, line, "new-message", outbound_event(message))
    relay(anon, line, "new-message", outbound_event(message, temp=False))
    message.refresh_from_db()
    assert message.status == "sent"
    assert message.external_message_id == "OUT-1"
    relay(anon, line, "updated-message", outbound_event(message, temp=False, dateDelivered=NOW_MS))
    message.refresh_from_db()
    assert message.status == "delivered"
    events = list(WebhookDelivery.objects.order_by("created_at").values_list("event", flat=True))
    assert events == ["message.sent", "message.delivered"]
    assert not InboundMessage.objects.exists()


def test_out_of_order_and_repeated_receipts_never_move_status_back(anon, acme, line, lead, hook):
    message = our_message(acme, lead, line, status="sent")
    Message.objects.filter(pk=message.pk).update(external_message_id="OUT-1")
    read = outbound_event(message, temp=False, dateDelivered=NOW_MS, dateRead=NOW_MS + 1000)
    delivered = outbound_event(message, temp=False, dateDelivered=NOW_MS)
    relay(anon, line, "updated-message", read)
    relay(anon, line, "updated-message", delivered)
    relay(anon, line, "new-message", outbound_event(message))
    relay(anon, line, "updated-message", read)
    message.refresh_from_db()
    assert message.status == "read"
    assert message.read_at is not None and message.delivered_at is not None
    events = sorted(WebhookDelivery.objects.values_list("event", flat=True))
    assert events == ["message.delivered", "message.opened"]


def test_a_send_error_after_delivery_does_not_fail_a_read_message(anon, acme, line, lead):
    message = our_message(acme, lead, line, status="read")
    Message.objects.filter(pk=message.pk).update(external_message_id="OUT-1")
    relay(anon, line, "message-send-error", outbound_event(message, temp=False, error=22))
    assert Message.objects.get(pk=message.pk).status == "read"


def test_a_send_error_fails_a_sent_message(anon, acme, line, lead, hook):
    message = our_message(acme, lead, line, status="sent")
    Message.objects.filter(pk=message.pk).update(external_message_id="OUT-1")
    relay(anon, line, "message-send-error", outbound_event(message, temp=False, error=22))
    message.refresh_from_db()
    assert message.status == "failed"
    delivery = WebhookDelivery.objects.get(event="message.failed")
    assert "22" in delivery.payload["data"]["error"]


def test_a_delivery_after_a_send_error_wins(anon, acme, line, lead, hook):
    message = our_message(acme, lead, line, status="sent")
    Message.objects.filter(pk=message.pk).update(external_message_id="OUT-1")
    relay(anon, line, "message-send-error", outbound_event(message, temp=False, error=22))
    relay(
        anon,
        line,
        "updated-message",
        outbound_event(message, temp=False, dateDelivered=NOW_MS + 1000),
    )
    message.refresh_from_db()
    assert message.status == "delivered"
    # The failure stays in the history: its text and its event.
    assert message.error_message == "The relay reported send error 22"
    events = list(WebhookDelivery.objects.order_by("created_at").values_list("event", flat=True))
    assert events == ["message.failed", "message.delivered"]


def test_a_delivery_settles_an_unknown_outcome(anon, acme, line, lead):
    from messaging.services import UNKNOWN_OUTCOME

    message = our_message(acme, lead, line, status="sent")
    Message.objects.filter(pk=message.pk).update(
        external_message_id="OUT-1", error_message=f"{UNKNOWN_OUTCOME}read timed out"
    )
    relay(
        anon,
        line,
        "updated-message",
        outbound_event(message, temp=False, dateDelivered=NOW_MS + 1000),
    )
    message.refresh_from_db()
    assert (message.status, message.error_message) == ("delivered", "")


def test_events_of_another_workspaces_messages_are_ignored(anon, acme, globex, lead):
    other = Line.objects.create(workspace=globex, server_url="http://relay2.invalid:1234")
    line = Line.objects.create(workspace=acme, server_url="http://relay.invalid:1234")
    message = our_message(acme, lead, line, status="sent")
    Message.objects.filter(pk=message.pk).update(external_message_id="OUT-1")
    relay(anon, other, "updated-message", outbound_event(message, temp=False, dateRead=NOW_MS))
    relay(anon, other, "new-message", outbound_event(message))
    assert Message.objects.get(pk=message.pk).status == "sent"


def test_a_reply_in_a_group_chat_keeps_the_direct_chat(anon, acme, line, lead):
    relay(anon, line, "new-message", inbound_event("IN-1", "one"))
    group = inbound_event("IN-2", "in the group", created=NOW_MS + 1)
    group["chats"] = [{"guid": "iMessage;+;chat493028371"}]
    relay(anon, line, "new-message", group)
    conversation = Conversation.objects.get(address=PHONE)
    assert conversation.chat_guid == f"iMessage;-;{PHONE}"
    assert conversation.unread_count == 2


def test_a_first_reply_from_a_group_chat_stores_no_chat(anon, acme, line, lead):
    group = inbound_event("IN-1", "hi all")
    group["chats"] = [{"guid": "any;+;chat493028371"}]
    relay(anon, line, "new-message", group)
    assert Conversation.objects.get(address=PHONE).chat_guid == ""
    macos26 = inbound_event("IN-2", "just me", created=NOW_MS + 1)
    macos26["chats"] = [{"guid": f"any;-;{PHONE}"}]
    relay(anon, line, "new-message", macos26)
    assert Conversation.objects.get(address=PHONE).chat_guid == f"any;-;{PHONE}"


def test_a_messages_read_by_opening_its_thread(api, anon, acme, line, lead):
    relay(anon, line, "new-message", inbound_event("IN-1", "one"))
    relay(anon, line, "new-message", inbound_event("IN-2", "two", created=NOW_MS + 1))
    conversation = Conversation.objects.get(address=PHONE)
    assert conversation.unread_count == 2
    body = api.get(f"/api/unibox/conversations/{conversation.pk}/messages").json()
    assert [m["message"] for m in body["messages"]] == ["one", "two"]
    assert Conversation.objects.get(pk=conversation.pk).unread_count == 0
    assert not InboundMessage.objects.filter(is_read=False).exists()


# Twilio


TWILIO_TOKEN = "twilio-token"


def twilio_post(client, path, params, token=TWILIO_TOKEN, site="http://testserver"):
    url = f"{site}{path}"
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


@pytest.fixture
def twilio_site(settings):
    settings.SITE_URL = "http://testserver"


def sms(**extra):
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": "+14155550004",
        "To": "+15005550006",
        "Body": "Yes please",
    }
    params.update(extra)
    return params


def test_twilio_inbound_with_a_valid_signature_is_stored(client, acme, twilio, twilio_site):
    params = sms()
    response = twilio_post(client, "/api/webhooks/twilio/inbound", params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode().endswith("<Response></Response>")
    reply = InboundMessage.objects.get()
    assert (reply.workspace_id, reply.channel, reply.address, reply.text) == (
        acme.pk,
        "sms",
        "+14155550004",
        "Yes please",
    )
    assert reply.external_id == params["MessageSid"]
    # Twilio retries: stored once.
    twilio_post(client, "/api/webhooks/twilio/inbound", params)
    assert InboundMessage.objects.count() == 1


def test_twilio_inbound_with_a_bad_signature_is_refused(client, acme, twilio, twilio_site):
    response = twilio_post(client, "/api/webhooks/twilio/inbound", sms(), token="wrong")
    assert response.status_code == 403
    assert response.json() == {"error": "Invalid Twilio signature", "code": "INVALID_SIGNATURE"}
    assert not InboundMessage.objects.exists()


def test_twilio_signature_covers_the_parameters(client, acme, twilio, twilio_site):
    params = sms()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        "http://testserver/api/webhooks/twilio/inbound", params
    )
    tampered = {**params, "Body": "STOP"}
    response = client.post(
        "/api/webhooks/twilio/inbound",
        urlencode(tampered),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )
    assert response.status_code == 403
    assert not DoNotContact.objects.exists()


def test_twilio_inbound_for_an_unknown_number_is_acknowledged(client, acme, twilio_site):
    params = sms(To="+15005550099", AccountSid="AC" + "9" * 32)
    response = twilio_post(client, "/api/webhooks/twilio/inbound", params)
    assert response.status_code == 200
    assert not InboundMessage.objects.exists()


def test_twilio_stop_opts_out(client, acme, twilio, twilio_site):
    twilio_post(client, "/api/webhooks/twilio/inbound", sms(Body="Stop"))
    entry = DoNotContact.objects.get()
    assert (entry.workspace_id, entry.value, entry.source) == (acme.pk, "+14155550004", "reply")
    assert Lead.objects.get(phone="+14155550004").opted_out is True


def test_twilio_status_callback_moves_an_sms_forward(client, acme, twilio, twilio_site):
    message = Message.objects.create(
        workspace=acme, message_type="sms", body="Hi", recipient_phone="+14155550004",
        status="sent", external_message_id="SM123", sent_at=timezone.now() - timedelta(minutes=1),
    )  # fmt: skip
    params = {"MessageSid": "SM123", "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32,
              "From": "+15005550006", "To": "+14155550004"}  # fmt: skip
    assert twilio_post(client, "/api/webhooks/twilio/status", params).status_code == 200
    assert Message.objects.get(pk=message.pk).status == "delivered"
    late = {**params, "MessageStatus": "sent"}
    twilio_post(client, "/api/webhooks/twilio/status", late)
    assert Message.objects.get(pk=message.pk).status == "delivered"
    bad = twilio_post(client, "/api/webhooks/twilio/status", {**params, "MessageStatus": "failed"},
                      token="nope")  # fmt: skip
    assert bad.status_code == 403
    assert Message.objects.get(pk=message.pk).status == "delivered"


@pytest.mark.parametrize("late_status", ["failed", "undelivered"])
def test_a_twilio_failure_after_delivery_changes_nothing(
    client, acme, twilio, twilio_site, hook, late_status, django_capture_on_commit_callbacks
):
    import responses

    message = Message.objects.create(
        workspace=acme, message_type="sms", body="Hi", recipient_phone="+14155550004",
        status="delivered", external_message_id="SM123", send_fallback_sms_on_failed=True,
        sent_at=timezone.now() - timedelta(minutes=1), delivered_at=timezone.now(),
    )  # fmt: skip
    params = {"MessageSid": "SM123", "MessageStatus": late_status, "ErrorCode": "30003",
              "AccountSid": "AC" + "0" * 32, "From": "+15005550006",
              "To": "+14155550004"}  # fmt: skip
    # No request may leave: a fallback SMS would be a POST to Twilio.
    with responses.RequestsMock(), django_capture_on_commit_callbacks(execute=True):
        response = twilio_post(client, "/api/webhooks/twilio/status", params)
    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.error_message, message.failed_at) == ("delivered", "", None)
    assert message.fallback_sms_status == ""
    assert not WebhookDelivery.objects.filter(event="message.failed").exists()
