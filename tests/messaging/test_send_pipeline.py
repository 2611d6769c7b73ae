"""POST /api/messages through the dispatcher and the send task to the relay simulator."""

import pytest

from messaging.models import Conversation, Message

pytestmark = pytest.mark.django_db


def post(api, capture, **body):
    with capture(execute=True):
        response = api.post("/api/messages", body, format="json")
    return response


def test_it_sends_a_first_message_through_chat_new_and_stores_the_chat(
    api, line, sim, django_capture_on_commit_callbacks
):
    response = post(
        api,
        django_capture_on_commit_callbacks,
        message="Hi {firstName|there}, from {{line_name}}",
        recipientPhone="+1 (415) 555-0102",
        recipientName="Dana Scully",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["success"] is True
    assert body["status"] == "pending"
    message = Message.objects.get(pk=body["message"]["_id"])
    assert message.status == "sent"
    assert message.line_id == line.pk
    assert message.rendered_body == "Hi Dana, from Ava Line"
    assert message.external_message_id
    assert sim.stats["by_endpoint"].get("chat_new") == 1
    assert sim.sent[0]["text"] == "Hi Dana, from Ava Line"
    conversation = Conversation.objects.get(workspace=line.workspace, address="+14155550102")
    assert conversation.chat_guid == "iMessage;-;+14155550102"
    assert conversation.line_id == line.pk
    assert conversation.lead_id == body["leadId"]


def test_a_second_message_uses_the_stored_chat(api, line, sim, django_capture_on_commit_callbacks):
    for text, status in (("First", 201), ("Second", 200)):
        response = post(
            api, django_capture_on_commit_callbacks, message=text, recipientPhone="+14155550102"
        )
        # The second send finds the lead the first one created.
        assert response.status_code == status
    assert sim.stats["by_endpoint"].get("chat_new") == 1
    assert sim.stats["by_endpoint"].get("message_text") == 1
    assert [m["text"] for m in sim.sent] == ["First", "Second"]
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_get_returns_the_message_object(api, line, sim, django_capture_on_commit_callbacks):
    response = post(
        api, django_capture_on_commit_callbacks, message="Hello", recipientPhone="+14155550102"
    )
    message_id = response.json()["message"]["_id"]
    detail = api.get(f"/api/messages/{message_id}").json()
    assert detail["status"] == "sent"
    assert detail["sentAt"].endswith("Z")
    assert detail["fromLineId"] == line.pk
    assert set(detail) >= {
        "_id", "message", "messageType", "status", "fromLineId", "recipientPhone",
        "recipientEmail", "recipientName", "leadId", "workspaceId", "campaignId", "stepIndex",
        "batchId", "scheduledDate", "settings", "sentAt", "deliveredAt", "readAt",
        "externalMessageId", "errorMessage", "checkedAddresses", "sendFallbackSmsOnFailed",
        "attachmentUrls", "createdAt", "updatedAt",
    }  # fmt: skip
    # The send answer leaves out what the queued message did not have yet.
    sent = response.json()["message"]
    assert set(sent) >= {
        "_id", "message", "messageType", "status", "recipientPhone", "leadId", "workspaceId",
        "settings", "checkedAddresses", "sendFallbackSmsOnFailed", "attachmentUrls",
        "createdAt", "updatedAt",
    }  # fmt: skip
    assert not {"fromLineId", "sentAt", "scheduledDate"} & set(sent)
    assert None not in sent.values()


def test_attachments_are_downloaded_and_sent_after_the_text(
    api, line, sim, file_server, settings, django_capture_on_commit_callbacks
):
    settings.MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = True
    response = post(
        api,
        django_capture_on_commit_callbacks,
        message="See attached",
        attachmentUrls=[f"{file_server}/files/photo.png"],
        recipientPhone="+14155550102",
    )
    message = Message.objects.get(pk=response.json()["message"]["_id"])
    assert message.status == "sent", message.error_message
    assert sim.stats["by_endpoint"].get("chat_new") == 1
    assert sim.stats["by_endpoint"].get("message_attachment") == 1


def test_an_attachment_only_message_is_sent(
    api, line, sim, file_server, settings, django_capture_on_commit_callbacks
):
    settings.MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = True
    response = post(
        api,
        django_capture_on_commit_callbacks,
        attachmentUrls=[f"{file_server}/a.png"],
        recipientPhone="+14155550102",
    )
    assert response.status_code == 201
    message = Message.objects.get(pk=response.json()["message"]["_id"])
    assert message.status == "sent", message.error_message
    assert sim.stats["by_endpoint"].get("message_attachment") == 1


def test_private_attachment_urls_are_refused_by_default(
    api, line, sim, file_server, django_capture_on_commit_callbacks
):
    response = post(
        api,
        django_capture_on_commit_callbacks,
        message="See attached",
        attachmentUrls=[f"{file_server}/photo.png"],
        recipientPhone="+14155550102",
    )
    message = Message.objects.get(pk=response.json()["message"]["_id"])
    assert message.status == "failed"
    assert "not a public address" in message.error_message
    assert sim.sent == []


def test_a_download_of_the_wrong_content_type_is_refused(
    api, line, sim, file_server, settings, django_capture_on_commit_callbacks
):
    settings.MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = True
    response = post(
        api,
        django_capture_on_commit_callbacks,
        message="See attached",
        attachmentUrls=[f"{file_server}/photo.png?type=text/html"],
        recipientPhone="+14155550102",
    )
    message = Message.objects.get(pk=response.json()["message"]["_id"])
    assert message.status == "failed"
    assert "Content-Type 'text/html'" in message.error_message
    assert sim.sent == []


def test_a_generic_binary_content_type_is_taken_at_the_urls_word(
    api, line, sim, file_server, settings, django_capture_on_commit_callbacks
):
    settings.MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = True
    response = post(
        api,
        django_capture_on_commit_callbacks,
        attachmentUrls=[f"{file_server}/voice.caf?type=application/octet-stream"],
        recipientPhone="+14155550102",
    )
    message = Message.objects.get(pk=response.json()["message"]["_id"])
    assert message.status == "sent", message.error_message


def test_a_host_that_resolves_public_but_connects_private_is_refused(files, settings, monkeypatch):
    """DNS rebinding: the name looked public when checked, the socket lands on 127.0.0.1."""
    from messaging import attachments

    settings.MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = False
    monkeypatch.setattr(attachments, "_check_public", lambda host, port: None)
    with pytest.raises(attachments.AttachmentError) as raised:
        attachments.fetch(f"{files.url}/photo.png")
    assert raised.value.permanent
    assert "not a public address" in raised.value.message
    assert files.paths == []


def test_an_environment_proxy_is_not_used_for_downloads(files, settings, monkeypatch):
    from messaging import attachments

    settings.MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = True
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    attachment = attachments.fetch(f"{files.url}/files/photo.png")
    assert (attachment.filename, attachment.content) == ("photo.png", files.png)
    assert files.paths == ["/files/photo.png"]


def test_a_new_recipient_sent_now_is_checked_by_the_send_alone(
    api, line, sim, django_capture_on_commit_callbacks
):
    from leads.models import AvailabilityJob, Lead

    response = post(
        api, django_capture_on_commit_callbacks, message="Hi", recipientPhone="+14155550102"
    )
    assert response.status_code == 201
    lead = Lead.objects.get(pk=response.json()["leadId"])
    # No background job for the new lead: the send asked the relay once, and its
    # answer is the lead's.
    assert not AvailabilityJob.objects.filter(workspace=line.workspace).exists()
    assert sim.stats["by_endpoint"].get("availability") == 1
    assert lead.availability_status == "available"
    assert lead.availability_address == "+14155550102"
    assert lead.availability_checked_at is not None


def test_a_recipient_off_imessage_is_marked_unavailable_by_the_send(
    api, line, sim, django_capture_on_commit_callbacks
):
    from leads.models import Lead

    response = post(
        api, django_capture_on_commit_callbacks, message="Hi", recipientPhone="+14155550103"
    )
    assert response.status_code == 201
    assert Message.objects.get(pk=response.json()["message"]["_id"]).status == "fallback"
    lead = Lead.objects.get(pk=response.json()["leadId"])
    assert lead.availability_status == "unavailable"
    assert lead.availability_address == "+14155550103"


def test_a_new_recipient_of_a_later_message_is_queued_for_its_own_check(
    api, line, sim, django_capture_on_commit_callbacks
):
    from leads.models import AvailabilityJob

    response = post(
        api,
        django_capture_on_commit_callbacks,
        message="Later",
        recipientPhone="+14155550104",
        scheduledDate="2099-01-01T10:00:00Z",
    )
    assert response.status_code == 201
    job = AvailabilityJob.objects.get(workspace=line.workspace)
    assert job.lead_ids == [response.json()["leadId"]]
