"""Relay webhooks end to end: the simulator posts to a live server over real HTTP."""

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from leads.models import Lead
from lines.relay import get_client
from messaging.inbound import relay_poll_all
from messaging.models import Conversation, DoNotContact, InboundMessage, Message, WebhookDelivery
from tests.messaging.conftest import verify_signature

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+14155550002"  # even last digit: on iMessage in the simulator


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture
def relay_line(acme, sim, live_server, settings, make_sim_line):
    settings.SITE_URL = live_server.url
    return make_sim_line(acme, first_name="Ava", last_name="Line")


@pytest.fixture
def lead(acme):
    from leads.services import lead_get_or_create

    lead, _ = lead_get_or_create(
        workspace=acme, data={"firstName": "Lee", "lastName": "Reed", "phone": PHONE}
    )
    return lead


@pytest.fixture
def replies_hook(acme, make_endpoint, receiver):
    """A receiver of message.reply: its arrival means the reply's transaction committed."""
    make_endpoint(acme, receiver.url, events=["message.reply"])

    def wait(count=1):
        return wait_for(lambda: len(receiver.events("message.reply")) >= count)

    return wait


def sent_message(workspace, lead, line, **fields):
    now = timezone.now()
    defaults = dict(
        workspace=workspace,
        lead=lead,
        line=line,
        body="Hi {firstName}",
        rendered_body="Hi Lee",
        recipient_phone=lead.phone,
        status=Message.Status.SENT,
        sent_at=now - timedelta(minutes=5),
        external_message_id=f"EXT-{now.timestamp()}",
        campaign_id="c" * 24,
        step_index=0,
        batch_id="batch-1",
    )
    defaults.update(fields)
    return Message.objects.create(**defaults)


def test_the_line_registers_its_webhook_with_the_relay(relay_line, sim, live_server):
    url = f"{live_server.url}/api/relay/{relay_line.webhook_token}"
    assert sim.webhooks == {url: ["new-message", "updated-message", "message-send-error"]}
    relay_line.refresh_from_db()
    assert relay_line.webhook_registered_at is not None


def test_a_reply_is_stored_listed_and_delivered_signed(
    acme, api, relay_line, sim, lead, make_endpoint, receiver
):
    endpoint = make_endpoint(acme, receiver.url, events=["message.reply"])
    parent = sent_message(acme, lead, relay_line)
    waiting_step = sent_message(
        acme, lead, relay_line, status="scheduled", sent_at=None, external_message_id="",
        stop_on_reply=True,
    )  # fmt: skip
    unrelated = sent_message(
        acme, lead, relay_line, status="pending", sent_at=None, external_message_id=""
    )

    requests.post(f"{sim.url}/sim/inbound", json={"from": PHONE, "text": "Sounds good"}, timeout=5)
    wait_for(lambda: receiver.events("message.reply"))

    reply = InboundMessage.objects.get()
    assert (reply.lead_id, reply.line_id, reply.text) == (lead.pk, relay_line.pk, "Sounds good")
    assert reply.in_reply_to_id == parent.pk
    lead.refresh_from_db()
    assert lead.replied_at == reply.received_at
    conversation = Conversation.objects.get(workspace=acme, address=PHONE)
    assert conversation.unread_count == 1
    assert conversation.last_message_text == "Sounds good"
    assert conversation.line_id == relay_line.pk
    assert conversation.chat_guid == f"iMessage;-;{PHONE}"
    assert Message.objects.get(pk=waiting_step.pk).status == "cancelled"
    assert Message.objects.get(pk=unrelated.pk).status == "pending"

    body = api.get("/api/replies").json()
    assert body["total"] == 1 and body["page"] == 1 and body["totalPages"] == 1
    item = body["replies"][0]
    assert item == {
        "leadId": lead.pk,
        "messageId": reply.pk,
        "message": "Sounds good",
        "respondedAtUtc": item["respondedAtUtc"],
        "recipientPhone": PHONE,
        "recipientEmail": None,
        "name": "Lee Reed",
        "recentReplies": [
            {
                "messageId": reply.pk,
                "message": "Sounds good",
                "receivedAtUtc": item["respondedAtUtc"],
            }
        ],
        "parentMessages": [
            {
                "messageId": parent.pk,
                "message": "Hi Lee",
                "sentAtUtc": parent.sent_at.isoformat(timespec="milliseconds").replace(
                    "+00:00", "Z"
                ),
                "batchId": "batch-1",
                "stepIndex": 0,
            }
        ],
    }
    assert item["respondedAtUtc"].endswith("Z")

    [request] = receiver.requests
    assert verify_signature(endpoint.secret, request)
    event = receiver.events()[0]
    assert event["event"] == "message.reply"
    assert event["message"] == "Sounds good"
    assert event["messageId"] == reply.pk
    assert event["leadId"] == lead.pk
    assert event["campaignId"] == "c" * 24
    assert event["data"]["reply"] == item


def test_a_reply_from_a_stranger_creates_a_quick_sends_lead(acme, relay_line, sim, replies_hook):
    requests.post(
        f"{sim.url}/sim/inbound", json={"from": "+14155559998", "text": "who?"}, timeout=5
    )
    replies_hook()
    reply = InboundMessage.objects.get()
    lead = Lead.objects.get(pk=reply.lead_id)
    assert lead.phone == "+14155559998"
    assert [lst.name for lst in lead.lists.all()] == ["Quick Sends"]
    assert lead.replied_at is not None


@pytest.mark.parametrize("text", ["STOP", "  stop ", "Opt Out", "remove me", "do not  contact"])
def test_stop_adds_to_dnc_opts_out_and_cancels_waiting(
    acme, relay_line, sim, lead, text, replies_hook
):
    waiting = sent_message(
        acme, lead, relay_line, status="pending", sent_at=None, external_message_id=""
    )
    requests.post(f"{sim.url}/sim/inbound", json={"from": PHONE, "text": text}, timeout=5)
    replies_hook()
    entry = DoNotContact.objects.get(workspace=acme)
    assert (entry.value, entry.kind, entry.source) == (PHONE, "phone", "reply")
    lead.refresh_from_db()
    assert lead.opted_out is True and lead.opted_out_at is not None
    assert Message.objects.get(pk=waiting.pk).status == "cancelled"
    # The reply rule tags the lead, for campaign conditions on tags.
    assert list(lead.lead_tags.values_list("tag__name", "source")) == [("opted-out", "rule")]


def test_a_message_that_only_contains_stop_is_not_an_opt_out(
    acme, relay_line, sim, lead, replies_hook
):
    requests.post(
        f"{sim.url}/sim/inbound", json={"from": PHONE, "text": "please don't stop"}, timeout=5
    )
    replies_hook()
    assert not DoNotContact.objects.exists()
    lead.refresh_from_db()
    assert lead.opted_out is False
    assert not lead.tags.exists()


def test_our_send_moves_to_sent_delivered_and_read_once_each(
    acme, relay_line, sim, lead, make_endpoint, receiver
):
    make_endpoint(acme, receiver.url)
    message = Message.objects.create(
        workspace=acme,
        lead=lead,
        line=relay_line,
        body="Hello",
        recipient_phone=PHONE,
        status=Message.Status.SENDING,
    )
    sent = get_client(relay_line).send_text(
        address=PHONE, text="Hello", temp_guid=str(message.temp_guid)
    )
    wait_for(lambda: Message.objects.get(pk=message.pk).status == "delivered")
    message.refresh_from_db()
    assert message.external_message_id == sent.guid
    assert message.sent_at is not None and message.delivered_at is not None

    requests.post(f"{sim.url}/sim/read", json={"guid": sent.guid}, timeout=5)
    wait_for(lambda: Message.objects.get(pk=message.pk).status == "read")
    wait_for(lambda: len(receiver.requests) >= 3)
    time.sleep(0.3)  # a duplicate webhook, if any, would arrive now
    assert [e["event"] for e in receiver.events()] == [
        "message.sent",
        "message.delivered",
        "message.opened",
    ]
    assert not InboundMessage.objects.exists()


def test_a_send_error_fails_the_message(acme, relay_line, sim, lead):
    odd = "+14155550003"  # odd last digit: not on iMessage, the relay fails it later
    message = Message.objects.create(
        workspace=acme, lead=lead, line=relay_line, body="Hello", recipient_phone=odd,
        status=Message.Status.SENDING,
    )  # fmt: skip
    get_client(relay_line).send_text(address=odd, text="Hello", temp_guid=str(message.temp_guid))
    wait_for(lambda: Message.objects.get(pk=message.pk).status == "failed")
    assert "22" in Message.objects.get(pk=message.pk).error_message


def test_polling_catches_what_a_dropped_webhook_missed(acme, relay_line, sim, lead):
    sim.configure(drop_webhooks=True)
    parent = sent_message(acme, lead, relay_line)
    sim.inbound(PHONE, "Got it")
    wait_for(lambda: sim.stats["webhooks"].get("dropped"))
    assert not InboundMessage.objects.exists()

    assert relay_poll_all()[relay_line.pk] == 1
    reply = InboundMessage.objects.get()
    assert reply.text == "Got it"
    assert reply.in_reply_to_id == parent.pk
    relay_line.refresh_from_db()
    assert relay_line.last_polled_ms > 0

    # Polling again (and the late webhook, if it came) changes nothing.
    relay_poll_all()
    assert InboundMessage.objects.count() == 1
    assert Conversation.objects.get(address=PHONE).unread_count == 1


def test_polling_reregisters_a_webhook_the_relay_lost(acme, relay_line, sim, live_server):
    sim.stop()
    sim.start()  # same port, but the webhook list survives only the process: forget it
    sim._webhooks.clear()
    relay_poll_all()
    assert f"{live_server.url}/api/relay/{relay_line.webhook_token}" in sim.webhooks


def test_relay_down_does_not_break_the_poll(acme, relay_line, sim):
    sim.stop()
    outcome = relay_poll_all()
    assert isinstance(outcome[relay_line.pk], str)
    assert WebhookDelivery.objects.count() == 0


def test_the_periodic_poll_fans_out_per_line(acme, relay_line, sim, lead, replies_hook):
    from messaging.inbound_tasks import relay_poll_lines

    sim.configure(drop_webhooks=True)
    sim.inbound(PHONE, "Polled")
    wait_for(lambda: sim.stats["webhooks"].get("dropped"))
    assert relay_poll_lines() == 1
    replies_hook()
    assert InboundMessage.objects.get().text == "Polled"
