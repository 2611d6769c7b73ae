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
    for text in ("First", "Second"):
        response = post(
            api, django_capture_on_commit_callbacks, message=text, recipientPhone="+14155550102"
        )
        assert response.status_code == 201
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
    assert set(response.json()["message"]) >= {
        "_id", "message", "messageType", "status", "fromLineId", "recipientPhone",
        "recipientEmail", "recipientName", "leadId", "workspaceId", "campaignId", "stepIndex",
        "batchId", "scheduledDate", "settings", "sentAt", "deliveredAt", "readAt",
        "externalMessageId", "errorMessage", "checkedAddresses", "sendFallbackSmsOnFailed",
        "attachmentUrls", "createdAt", "updatedAt",
    }  # fmt: skip


@pytest.fixture
def file_server():
    """Serves a small PNG on 127.0.0.1 (a private address, so tests opt in)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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
