"""A customer's webhook consumer, written from the published pages, fed with the
events our server really sends (relay simulator over real HTTP, a local receiver):

- the signature verifiers of message-webhooks.mdx, the Python one run as published
  (read from the page), the Node one re-implemented faithfully in Python;
- the example handler of check-availability-rr.mdx, run as published;
- the published example bodies of every event, whose fields must all be in ours.

Our body is sent the way `JSON.stringify` writes it (see messaging.delivery): both
verifiers accept ASCII-only events, and for non-ASCII text the Node verifier does
while the Python one, which escapes it, does not (README, "Webhooks").
"""

import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest

from messaging.inbound import relay_event_handle
from messaging.models import Message

PAGES = Path(__file__).with_name("published")


def _code_blocks(page: str, language: str) -> list[str]:
    text = (PAGES / page).read_text()
    return re.findall(rf"```{language}[^\n]*\n(.*?)```", text, flags=re.S)


def published_python_verifier():
    """`verify_webhook` exactly as message-webhooks.mdx publishes it."""
    [source] = [b for b in _code_blocks("api-reference/message-webhooks.mdx", "python")]
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - the published code, run as a customer would
    return namespace["verify_webhook"]


def node_verifier(body: dict, signature: str, secret: str) -> bool:
    """message-webhooks.mdx's Node `verifyWebhook`: HMAC-SHA256 of `JSON.stringify(body)`
    (compact, non-ASCII kept as is) keyed with the secret string, compared to the
    header."""
    expected = hmac.new(
        secret.encode(),
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        hashlib.sha256,
    ).hexdigest()
    return len(signature) == len(expected) and hmac.compare_digest(signature, expected)


class PublishedHandler:
    """The "Handle webhooks on your server" half of check-availability-rr.mdx's
    example, run as published with a stand-in `app`, `request` and helpers."""

    def __init__(self):
        [source] = _code_blocks("api-reference/endpoint/check-availability-rr.mdx", "python")
        handler_source = source[source.index("# Step 2") :]
        self.whatsapp: list = []
        self.notified: list = []

        class App:
            def post(self, path):
                return lambda function: function

        namespace = {
            "app": App(),
            "send_whatsapp": self.whatsapp.append,
            "notify_team": lambda lead_id, text: self.notified.append((lead_id, text)),
        }
        exec(handler_source, namespace)  # noqa: S102 - the published code, as is
        self.handle = namespace["handle"]

    def __call__(self, body: dict):
        class Request:
            json = body

        return self.handle(Request())


def published_examples() -> dict[str, dict]:
    """The "Full example body" of each event in message-webhooks.mdx, and its
    `message.reply` example payload."""
    examples = {}
    for block in _code_blocks("api-reference/message-webhooks.mdx", "json"):
        body = json.loads(block)
        examples[body["event"]] = body
    return examples


def integrations_reply_data() -> dict:
    """The `data` of integrations/webhooks.mdx's payload example."""
    [block] = _code_blocks("integrations/webhooks.mdx", "json")
    return json.loads(block)["data"]


def assert_has_published_fields(ours, published, path="") -> None:
    for name, value in published.items():
        assert name in ours, f"{path}{name}"
        if isinstance(value, dict) and ours[name] is not None:
            assert_has_published_fields(ours[name], value, f"{path}{name}.")


@pytest.fixture
def endpoint(acme, make_endpoint, receiver):
    return make_endpoint(acme, receiver.url)


@pytest.fixture
def consumer(endpoint, receiver):
    """Every request the receiver got, checked as the published consumer checks it:
    both verifiers on the parsed body, and the published handler run on it."""
    python_verify = published_python_verifier()
    handler = PublishedHandler()

    def events(name):
        found = []
        for request in receiver.requests:
            body = json.loads(request["body"])
            if body["event"] != name:
                continue
            headers = {k.lower(): v for k, v in request["headers"].items()}
            signature = headers["x-tuco-signature"]
            assert headers["content-type"] == "application/json"
            assert headers["x-tuco-event"] == name
            assert headers["x-tuco-timestamp"].endswith("Z")
            assert node_verifier(body, signature, endpoint.secret)
            if request["body"].isascii():
                assert python_verify(body, signature, endpoint.secret)
            assert handler(body) == {"ok": True}
            found.append(body)
        return found

    events.handler = handler
    return events


def post(api, capture, **body):
    with capture(execute=True):
        response = api.post("/api/messages", body, format="json")
    assert response.status_code in (200, 201), response.json()
    return Message.objects.get(pk=response.json()["message"]["_id"])


CRM = {"ghlContactId": "aMUQn0u0Z7cw0NQ7tJ5R", "ghlLocationId": "eL7DD22BdZ0rismu7qCA"}


def test_message_sent_then_opened_then_replied(
    api, acme, line, sim, consumer, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    examples = published_examples()
    message = post(
        api, capture, message="Here's your document.", recipientPhone="+14155550102",
        recipientName="BG Real", **CRM,
    )  # fmt: skip
    assert message.status == "sent"

    [sent] = consumer("message.sent")
    assert_has_published_fields(sent, examples["message.sent"])
    assert sent["messageId"] == sent["message"]["_id"] == message.pk
    assert sent["message"]["status"] == "sent"
    assert sent["message"]["message"] == "Here's your document."
    assert sent["message"]["recipientPhone"] == "+14155550102"
    assert sent["message"]["recipientName"] == "BG Real"
    assert sent["message"]["sentAt"].endswith("Z")
    assert sent["leadId"] == sent["lead"]["_id"] == message.lead_id
    assert sent["lead"]["listId"]
    # message-webhooks.mdx's shared fields: the workspace's first user by default.
    assert sent["contactOwnerEmail"] == "alice@acme.test"
    assert {k: sent[k] for k in CRM} == CRM
    assert (sent["hsPortalId"], sent["hsContactId"], sent["campaignId"]) == (None, None, None)

    with capture(execute=True):
        relay_event_handle(
            line=line, event_type="updated-message", data=sim.mark_read(message.external_message_id)
        )
    [opened] = consumer("message.opened")
    assert_has_published_fields(opened, examples["message.opened"])
    assert opened["message"]["readAt"].endswith("Z")
    assert opened["data"]["readAt"] == opened["message"]["readAt"]
    assert {k: opened[k] for k in CRM} == CRM

    with capture(execute=True):
        relay_event_handle(
            line=line, event_type="new-message", data=sim.inbound("+14155550102", "Interested!")
        )
    [reply] = consumer("message.reply")
    assert_has_published_fields(reply, examples["message.reply"])
    assert_has_published_fields(reply["data"], integrations_reply_data(), "data.")
    assert reply["message"] == "Interested!"
    assert reply["leadId"] == message.lead_id
    assert (reply["firstName"], reply["lastName"], reply["phone"]) == (
        "BG",
        "Real",
        "+14155550102",
    )
    assert reply["recipientName"] == "BG Real"
    assert reply["fromLineId"] == line.pk
    assert reply["repliedAtUtc"].endswith("Z")
    assert reply["originalMessageId"] == message.pk
    assert reply["originalMessage"]["_id"] == message.pk
    assert [p["messageId"] for p in reply["parentMessages"]] == [message.pk]
    assert reply["data"]["parentMessages"] == reply["parentMessages"]
    assert reply["data"]["repliedAtUtc"] == reply["repliedAtUtc"]
    # data.reply is exactly one item of GET /api/replies.
    [item] = api.get("/api/replies", {"leadId": message.lead_id}).json()["replies"]
    assert reply["data"]["reply"] == item
    assert reply["data"]["message"] == "Interested!"
    assert reply["data"]["status"] == "received"
    assert reply["data"]["recipientPhone"] == "+14155550102"
    # The published handler saw the reply text and the lead.
    assert consumer.handler.notified == [(message.lead_id, "Interested!")]
    # The answered message's CRM ids come along.
    assert {k: reply[k] for k in CRM} == CRM


def test_message_fallback(api, acme, line, sim, consumer, django_capture_on_commit_callbacks):
    message = post(
        api,
        django_capture_on_commit_callbacks,
        message="Hi from N8N",
        recipientPhone="+14155550101",
    )
    assert message.status == "fallback"
    [fallback] = consumer("message.fallback")
    assert_has_published_fields(fallback, published_examples()["message.fallback"])
    reason = "Prospect's iMessage not available on +14155550101"
    assert fallback["message"]["status"] == "fallback"
    assert fallback["message"]["errorMessage"] == reason
    assert fallback["data"]["reason"] == reason
    assert fallback["data"]["checkedAddresses"] == ["+14155550101"]
    # integrations/webhooks.mdx's "SMS Fallback" reads these, failures-and-fallbacks.mdx
    # body.message.message.
    assert fallback["data"]["recipientPhone"] == "+14155550101"
    assert fallback["data"]["message"] == fallback["message"]["message"] == "Hi from N8N"
    # The published handler sent its WhatsApp to the message's recipient.
    assert consumer.handler.whatsapp == ["+14155550101"]


def test_message_failed(api, acme, line, sim, consumer, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    message = post(api, capture, message="Hi", recipientPhone="+14155550102")
    with capture(execute=True):
        relay_event_handle(
            line=line,
            event_type="message-send-error",
            data={"guid": message.external_message_id, "error": 22, "isFromMe": True},
        )
    [failed] = consumer("message.failed")
    assert_has_published_fields(failed, published_examples()["message.failed"])
    assert failed["message"]["status"] == "failed"
    assert failed["message"]["errorMessage"] == "The relay reported send error 22"
    assert failed["data"]["error"] == "The relay reported send error 22"


def test_non_ascii_text_is_sent_as_json_stringify_writes_it(
    api, acme, line, sim, endpoint, receiver, consumer, django_capture_on_commit_callbacks
):
    post(
        api, django_capture_on_commit_callbacks, message="Olá José ✓", recipientPhone="+14155550102"
    )
    [request] = [r for r in receiver.requests if json.loads(r["body"])["event"] == "message.sent"]
    assert "Olá José ✓".encode() in request["body"]
    body = json.loads(request["body"])
    signature = request["headers"]["X-Tuco-Signature"]
    # The raw body and the Node verifier check out (consumer() checks both again)...
    raw = hmac.new(endpoint.secret.encode(), request["body"], hashlib.sha256).hexdigest()
    assert signature == raw
    assert node_verifier(body, signature, endpoint.secret)
    # ...the published Python verifier, which escapes non-ASCII text, does not.
    assert not published_python_verifier()(body, signature, endpoint.secret)
    assert len(consumer("message.sent")) == 1


@pytest.mark.django_db
def test_contact_owner_is_the_leads_own_when_it_has_one(acme):
    from leads.models import Lead
    from messaging.webhooks import event_payload

    owned = Lead.objects.create(
        workspace=acme, first_name="Ada", contact_owner_email="owner@acme.test"
    )
    unowned = Lead.objects.create(workspace=acme, first_name="Bo")
    assert (
        event_payload(workspace=acme, event="message.sent", lead=owned, text="hi")[
            "contactOwnerEmail"
        ]
        == "owner@acme.test"
    )
    assert (
        event_payload(workspace=acme, event="message.sent", lead=unowned, text="hi")[
            "contactOwnerEmail"
        ]
        == "alice@acme.test"
    )
