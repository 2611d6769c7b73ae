import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from lines.models import Line
from messaging.api.unibox import SendReplyApi
from messaging.inbound import inbound_record
from messaging.models import Conversation, Message
from messaging.services import dnc_add

PHONE = "+14155550002"


@pytest.fixture
def line(acme):
    return Line.objects.create(workspace=acme, server_url="http://relay.invalid:1234")


def reply(workspace, address, text, line=None, minutes_ago=0):
    return inbound_record(
        workspace=workspace,
        address=address,
        text=text,
        channel="imessage",
        external_id=uuid.uuid4().hex,
        line=line,
        chat_guid=f"iMessage;-;{address}" if line else "",
        received_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_it_lists_one_conversation_per_recipient_latest_first(api, acme, line):
    reply(acme, PHONE, "first", line, minutes_ago=10)
    reply(acme, PHONE, "second", line, minutes_ago=5)
    reply(acme, "ann@icloud.com", "hello", line, minutes_ago=1)
    body = api.get("/api/unibox/conversations").json()
    assert body["total"] == 2
    ann, lee = body["conversations"]
    assert (ann["recipientEmail"], ann["unreadCount"], ann["lastMessage"]) == (
        "ann@icloud.com",
        1,
        "hello",
    )
    assert (lee["recipientPhone"], lee["unreadCount"], lee["lastMessage"]) == (PHONE, 2, "second")
    assert lee["lead"]["phone"] == PHONE
    assert lee["lineId"] == line.pk
    unread = api.get("/api/unibox/conversations?unread=true&limit=1").json()
    assert (unread["total"], unread["totalPages"], len(unread["conversations"])) == (2, 2, 1)


def test_the_thread_merges_both_directions_and_marks_read(api, acme, line):
    first = reply(acme, PHONE, "hi there", line, minutes_ago=10)
    Message.objects.create(
        workspace=acme, lead=first.lead, line=line, body="Hello back", recipient_phone=PHONE,
        status="delivered", sent_at=timezone.now() - timedelta(minutes=5),
    )  # fmt: skip
    conversation = Conversation.objects.get(address=PHONE)
    body = api.get(f"/api/unibox/conversations/{conversation.pk}/messages").json()
    assert [(m["direction"], m["message"]) for m in body["messages"]] == [
        ("inbound", "hi there"),
        ("outbound", "Hello back"),
    ]
    assert body["conversation"]["unreadCount"] == 0
    # By recipient, too.
    by_phone = api.get("/api/unibox/conversations/(415) 555-0002/messages")
    assert by_phone.status_code == 200


def test_send_reply_goes_from_the_line_that_talked(api, acme, line):
    reply(acme, PHONE, "hi", line)
    conversation = Conversation.objects.get(address=PHONE)
    for key in (PHONE, conversation.pk):
        response = api.post(
            "/api/unibox/send-reply", {"conversationId": key, "message": "Hello!"}, format="json"
        )
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["success"] is True
        message = Message.objects.get(pk=body["messageId"])
        assert (message.line_id, message.line_pinned, message.recipient_phone, message.body) == (
            line.pk,
            True,
            PHONE,
            "Hello!",
        )
        assert message.lead_id == conversation.lead_id


def test_send_reply_by_lead(api, acme, line):
    inbound = reply(acme, PHONE, "hi", line)
    response = api.post(
        "/api/unibox/send-reply", {"leadId": inbound.lead_id, "message": "Yo"}, format="json"
    )
    assert response.status_code == 200
    assert Message.objects.get(pk=response.json()["messageId"]).line_id == line.pk


def test_send_reply_errors(api, acme, line, globex_api):
    reply(acme, PHONE, "hi", line)

    def post(body, client=api):
        response = client.post("/api/unibox/send-reply", body, format="json")
        return response.status_code, response.json()

    assert post({"message": "x"}) == (
        400,
        {"error": "Either conversationId or leadId is required", "code": "VALIDATION_ERROR"},
    )
    assert post({"conversationId": PHONE})[0] == 400
    assert post({"conversationId": PHONE, "message": "   "})[0] == 400
    not_found = (404, {"error": "Conversation not found", "code": "NOT_FOUND"})
    assert post({"conversationId": "+14155550004", "message": "x"}) == not_found
    assert post({"conversationId": PHONE, "message": "x"}, client=globex_api) == not_found
    assert post({"leadId": "0" * 24, "message": "x"}) == (
        404,
        {"error": "Lead not found or access denied"},
    )
    dnc_add(workspace=acme, phone=PHONE)
    status, body = post({"conversationId": PHONE, "message": "x"})
    assert (status, body["code"]) == (400, "DO_NOT_CONTACT")
    assert not Message.objects.filter(body="x").exists()


def test_send_reply_uses_the_unibox_rate_limit():
    assert SendReplyApi.rate_limit_group == "unibox_reply"


def test_conversations_of_another_workspace_are_invisible(api, globex_api, acme, line):
    reply(acme, PHONE, "hi", line)
    conversation = Conversation.objects.get(address=PHONE)
    assert globex_api.get("/api/unibox/conversations").json()["conversations"] == []
    response = globex_api.get(f"/api/unibox/conversations/{conversation.pk}/messages")
    assert response.status_code == 404
    assert Conversation.objects.get(pk=conversation.pk).unread_count == 1
