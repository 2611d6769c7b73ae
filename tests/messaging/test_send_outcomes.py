"""The send task against the relay simulator (real HTTP) and Twilio (mocked at HTTP
with `responses`): fallback, retries, permanent errors, duplicates, the sweeper."""

import json
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import responses
from django.core import mail
from django.utils import timezone

from leads.models import Lead
from leads.services import lead_get_or_create
from lines.models import LineUsage
from lines.relay import RelayError
from lines.services import line_health_check
from messaging import sending
from messaging.dispatch import dispatch_due
from messaging.models import Conversation, DoNotContact, Message
from messaging.models.webhooks import WebhookDelivery
from messaging.sending import message_send, messages_reconcile_stuck
from messaging.services import message_advance, message_enqueue
from tests.messaging.conftest import twilio_error, twilio_ok

pytestmark = pytest.mark.django_db


@pytest.fixture
def passthrough_relay(sim):
    """A `responses` mock for Twilio that lets requests to the simulator through."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(sim.url)
        yield rsps


@pytest.fixture
def outbox(django_capture_on_commit_callbacks):
    """Enqueue and run everything the worker would, on-commit work included."""

    def run(workspace, **kwargs):
        kwargs.setdefault("body", "Hello")
        with django_capture_on_commit_callbacks(execute=True):
            message = message_enqueue(workspace=workspace, **kwargs)
        message.refresh_from_db()
        return message

    return run


def later(minutes=0, seconds=0):
    return timezone.now() + timedelta(minutes=minutes, seconds=seconds)


def claim(message, now=None):
    """Dispatch without running the send task (as if the worker had not got to it)."""
    dispatch_due(now=now or timezone.now(), message_ids=[message.pk])
    message.refresh_from_db()
    return message


def usage_total(line):
    return sum(LineUsage.objects.filter(line=line).values_list("total_messages_count", flat=True))


# Fallback (no iMessage address)


def test_no_imessage_address_ends_in_fallback_with_an_sms(
    acme, line, sim, twilio, outbox, passthrough_relay, make_endpoint
):
    make_endpoint(acme, "http://127.0.0.1:9/hooks", events=["message.fallback"])
    twilio_ok(passthrough_relay, sid="SMfallback")
    lead, _ = lead_get_or_create(
        workspace=acme, data={"phone": "+14155550101", "altPhone1": "+14155550103"}
    )
    message = outbox(acme, lead=lead, body="Hi {firstName|there}")
    assert message.status == "fallback"
    assert [c["address"] for c in message.checked_addresses] == ["+14155550101", "+14155550103"]
    assert sim.sent == []
    assert usage_total(line) == 0
    sms = parse_qs(passthrough_relay.calls[-1].request.body)
    assert sms["To"] == ["+14155550101"]
    assert sms["From"] == ["+15005550006"]
    assert sms["Body"] == ["Hi there"]
    assert sms["StatusCallback"][0].endswith("/api/webhooks/twilio/status")
    assert message.fallback_sms_sid == "SMfallback"
    event = WebhookDelivery.objects.get(event="message.fallback").payload
    assert event["data"]["checkedAddresses"] == ["+14155550101", "+14155550103"]


def test_addresses_are_tried_phone_then_alt_phones_then_emails(acme, line, sim, outbox):
    lead, _ = lead_get_or_create(
        workspace=acme,
        data={"phone": "+14155550101", "altPhone1": "+14155550103", "email": "d@icloud.com",
              "altEmail1": "x@gmail.com"},
    )  # fmt: skip
    message = outbox(acme, lead=lead)
    assert message.status == "sent"
    assert message.sent_address == "d@icloud.com"
    assert [c["address"] for c in message.checked_addresses] == [
        "+14155550101", "+14155550103", "d@icloud.com",
    ]  # fmt: skip
    assert sim.sent[0]["handle"]["address"] == "d@icloud.com"


def test_fallback_without_twilio_sends_no_sms(acme, line, sim, outbox):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(sim.url)
        message = outbox(acme, recipient_phone="+14155550101")
        assert message.status == "fallback"
        assert not [c for c in rsps.calls if "twilio" in c.request.url]
    assert message.fallback_sms_status == ""


@pytest.mark.parametrize("stop", ["opted-out", "alt-email-on-the-list"])
def test_no_fallback_sms_goes_to_a_lead_who_opted_out_or_is_on_the_list(acme, twilio, stop):
    lead, _ = lead_get_or_create(
        workspace=acme, data={"phone": "+14155550101", "altEmail1": "dana@example.com"}
    )
    message = Message.objects.create(
        workspace=acme, lead=lead, recipient_phone=lead.phone, body="Hi", status="fallback"
    )
    if stop == "opted-out":
        Lead.objects.filter(pk=lead.pk).update(opted_out=True)
    else:
        DoNotContact.objects.create(workspace=acme, value="dana@example.com", kind="email")
    with responses.RequestsMock():  # any request to Twilio would fail the test
        assert sending.fallback_sms_send(message_id=message.pk) == "skipped"
    message.refresh_from_db()
    assert (message.fallback_sms_status, message.fallback_sms_sid) == ("skipped", "")


# Errors and retries


def test_relay_down_mid_batch_retries_later_and_gives_the_slot_back(
    acme, line, sim, django_capture_on_commit_callbacks
):
    messages = [
        message_enqueue(workspace=acme, body=f"m{i}", recipient_phone=f"+1415555010{i}")
        for i in (2, 4, 6)
    ]
    dispatch_due(now=timezone.now())
    assert message_send(message_id=messages[0].pk) == "sent"
    sim.stop()
    assert message_send(message_id=messages[1].pk) == "scheduled"
    second = Message.objects.get(pk=messages[1].pk)
    assert (second.status, second.attempts) == ("scheduled", 1)
    assert second.due_at > timezone.now()
    # The API's scheduledDate says when the retry will be tried.
    assert second.scheduled_date == second.due_at
    assert "relay" in second.error_message.lower()
    assert usage_total(line) == 2  # the third still holds its slot until it runs
    assert message_send(message_id=messages[2].pk) == "scheduled"
    assert usage_total(line) == 1


def test_a_relay_timeout_is_looked_up_then_retried_five_times_then_fails_with_fallback_sms(
    acme, line, sim, twilio, passthrough_relay, make_endpoint, django_capture_on_commit_callbacks
):
    make_endpoint(acme, "http://127.0.0.1:9/hooks", events=["message.failed"])
    twilio_ok(passthrough_relay, sid="SMfailed")
    sim.configure(send_timeout=True, timeout_delay=0)
    message = message_enqueue(
        workspace=acme, body="Hi", recipient_phone="+14155550102",
        send_fallback_sms_on_failed=True,
    )  # fmt: skip
    statuses = []
    for attempt in range(1, 6):
        # Timeouts count against the line's health; the periodic health check
        # (ping answers) brings it back between attempts.
        line_health_check(line=line)
        with django_capture_on_commit_callbacks(execute=True):
            dispatch_due(now=later(minutes=60 * attempt), message_ids=[message.pk])
        # A 504 leaves it open whether the Mac sent it: nothing happens until the
        # sweeper has looked the send up on the relay (and found nothing).
        message.refresh_from_db()
        assert (message.status, message.attempts) == ("sending", attempt - 1)
        assert "Transaction timeout" in message.error_message
        with django_capture_on_commit_callbacks(execute=True):
            messages_reconcile_stuck(now=later(minutes=60 * attempt + 10))
        message.refresh_from_db()
        statuses.append(message.status)
    assert statuses == ["scheduled"] * 4 + ["failed"]
    assert message.attempts == 5
    assert "Transaction timeout" in message.error_message
    assert sim.stats["by_endpoint"]["chat_new"] == 5
    assert sim.sent == []
    assert usage_total(line) == 0
    assert message.fallback_sms_status == "sent"
    assert message.fallback_sms_sid == "SMfailed"
    failed = WebhookDelivery.objects.get(event="message.failed").payload
    assert "Transaction timeout" in failed["data"]["error"]


def test_a_failed_message_without_the_flag_gets_no_sms(
    acme, line, sim, twilio, outbox, django_capture_on_commit_callbacks
):
    sim.configure(send_timeout=True, timeout_delay=0)
    message = message_enqueue(workspace=acme, body="Hi", recipient_phone="+14155550102")
    Message.objects.filter(pk=message.pk).update(attempts=4)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(sim.url)
        dispatch_due(now=timezone.now())
        assert message_send(message_id=message.pk) == "sending"
        with django_capture_on_commit_callbacks(execute=True):
            assert messages_reconcile_stuck(now=later(minutes=10))["failed"] == 1
        assert Message.objects.get(pk=message.pk).status == "failed"
        assert not [c for c in rsps.calls if "twilio" in c.request.url]


def test_an_availability_error_is_retried_not_treated_as_no_imessage(acme, line, sim, outbox):
    message = outbox(acme, recipient_phone="+14155559999")  # the simulator's error address
    assert (message.status, message.attempts) == ("scheduled", 1)
    assert "Availability check failed" in message.error_message
    assert sim.sent == []


def test_twilio_invalid_number_is_permanent(acme, twilio, outbox):
    with responses.RequestsMock() as rsps:
        twilio_error(rsps, 21211)
        message = outbox(acme, message_type="sms", recipient_phone="+14155550102")
        assert len(rsps.calls) == 1
    assert message.status == "failed"
    assert "21211" in message.error_message


def test_twilio_server_error_is_retried(acme, twilio, outbox):
    with responses.RequestsMock() as rsps:
        twilio_error(rsps, 20500, status=500)
        message = outbox(acme, message_type="sms", recipient_phone="+14155550102")
    assert (message.status, message.attempts) == ("scheduled", 1)


def test_sms_goes_through_twilio(acme, twilio, outbox):
    with responses.RequestsMock() as rsps:
        twilio_ok(rsps, sid="SMok")
        message = outbox(acme, message_type="sms", recipient_phone="+14155550102", body="Yo")
        assert parse_qs(rsps.calls[0].request.body)["Body"] == ["Yo"]
    assert (message.status, message.external_message_id) == ("sent", "SMok")


def test_email_goes_through_the_django_backend(acme, outbox, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    lead, _ = lead_get_or_create(
        workspace=acme, data={"email": "d@example.com", "firstName": "Dana"}
    )
    message = outbox(acme, message_type="email", lead=lead, subject="Hello", body="Hi {firstName}")
    assert message.status == "sent"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["d@example.com"]
    assert mail.outbox[0].subject == "Hello"
    assert mail.outbox[0].body == "Hi Dana"


# Exactly once


def test_a_duplicate_task_delivery_sends_once(acme, line, sim):
    message = message_enqueue(workspace=acme, body="Once", recipient_phone="+14155550102")
    claim(message)
    assert message_send(message_id=message.pk) == "sent"
    assert message_send(message_id=message.pk) == "skipped"
    assert len(sim.sent) == 1
    assert usage_total(line) == 1


def test_a_send_task_lost_before_it_ran_is_queued_again_and_sent_once(acme, line, sim):
    message = message_enqueue(workspace=acme, body="Later", recipient_phone="+14155550102")
    claim(message)
    assert message.status == "sending"  # its send task was lost
    assert messages_reconcile_stuck(now=later(seconds=20))["requeued"] == 0  # may be queued
    # A new send task for it (run here: tasks are eager in the tests).
    outcome = messages_reconcile_stuck(now=later(minutes=1))
    assert outcome["requeued"] == 1
    message.refresh_from_db()
    assert message.status == "sent"
    assert len(sim.sent) == 1
    assert usage_total(line) == 1
    assert messages_reconcile_stuck(now=later(minutes=10)) == {
        "requeued": 0, "sent": 0, "failed": 0,
    }  # fmt: skip


def test_a_worker_killed_after_the_relay_call_is_reconciled_not_resent(
    acme, line, sim, monkeypatch
):
    message = message_enqueue(workspace=acme, body="Exactly once", recipient_phone="+14155550102")
    claim(message)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("worker killed")

    monkeypatch.setattr(sending, "_record_sent", crash)
    with pytest.raises(KeyboardInterrupt):
        message_send(message_id=message.pk)
    monkeypatch.undo()
    message.refresh_from_db()
    assert message.status == "sending"
    assert message.channel_called_at is not None
    assert len(sim.sent) == 1
    outcome = messages_reconcile_stuck(now=later(minutes=10))
    assert outcome == {"requeued": 0, "sent": 1, "failed": 0}
    message.refresh_from_db()
    assert message.status == "sent"
    assert message.external_message_id == sim.sent[0]["guid"]
    assert len(sim.sent) == 1
    assert usage_total(line) == 1


def test_a_send_that_never_reached_the_relay_is_requeued(acme, line, sim):
    message = message_enqueue(workspace=acme, body="Lost", recipient_phone="+14155550102")
    claim(message)
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(
        send_claimed_at=now, channel_called_at=now, sent_address="+14155550102",
        rendered_body="Lost",
    )  # fmt: skip
    assert messages_reconcile_stuck(now=later(minutes=10))["requeued"] == 1
    message.refresh_from_db()
    # The relay has no record of it: retried as one failed attempt, with its backoff.
    assert (message.status, message.attempts) == ("scheduled", 1)
    assert message.scheduled_date == message.due_at > later(minutes=10)
    assert message.error_message == sending.INTERRUPTED
    claim(message, now=later(minutes=11))
    assert message_send(message_id=message.pk) == "sent"
    assert len(sim.sent) == 1


def stuck_after_the_relay_call(message, body="Lost", address="+14155550102"):
    """The worker died right after calling the relay (channel called, nothing recorded)."""
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(
        send_claimed_at=now, channel_called_at=now, sent_address=address, rendered_body=body
    )
    return int(now.timestamp() * 1000)


class HistoryRelay:
    """A relay whose message history is given; `query_messages` behaves like the real
    one (oldest first, at or after `after`, at most `limit`) and records its calls."""

    def __init__(self, history):
        self.history = sorted(history, key=lambda m: m["dateCreated"])
        self.queries = []

    def query_messages(self, after_ms, limit=1000):
        self.queries.append(after_ms)
        return [m for m in self.history if m["dateCreated"] >= after_ms][:limit]


def relay_item(guid, created, text="Lost", address="+14155550102", **extra):
    return {"guid": guid, "text": text, "isFromMe": True, "dateCreated": created,
            "handle": {"address": address}, "chats": [{"guid": f"iMessage;-;{address}"}],
            "attachments": [], **extra}  # fmt: skip


def test_the_sweeper_finds_the_send_by_temp_guid_past_the_first_page(acme, line, sim, monkeypatch):
    message = message_enqueue(workspace=acme, body="Lost", recipient_phone="+14155550102")
    claim(message)
    t0 = stuck_after_the_relay_call(message)
    others = [relay_item(f"OTHER-{i}", t0 + i, address="+14155550104") for i in range(999)]
    # Same address and text, but not this send: a content match would take it.
    decoy = relay_item("DECOY", t0 + 999)
    ours = relay_item("OURS", t0 + 1500, tempGuid=str(message.temp_guid).upper())
    relay = HistoryRelay([*others, decoy, ours])
    monkeypatch.setattr(sending, "get_client", lambda line: relay)
    assert messages_reconcile_stuck(now=later(minutes=10)) == {
        "requeued": 0, "sent": 1, "failed": 0,
    }  # fmt: skip
    message.refresh_from_db()
    assert (message.status, message.external_message_id) == ("sent", "OURS")
    assert len(relay.queries) == 2 and relay.queries[1] == t0 + 999
    assert sim.sent == []


def test_an_attachment_only_send_is_found_by_its_file_not_resent(
    acme, line, sim, file_server, settings, monkeypatch
):
    settings.MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS = True
    message = message_enqueue(
        workspace=acme, recipient_phone="+14155550102",
        attachment_urls=[f"{file_server}/files/photo.png"],
    )  # fmt: skip
    claim(message)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("worker killed")

    monkeypatch.setattr(sending, "_record_sent", crash)
    with pytest.raises(KeyboardInterrupt):
        message_send(message_id=message.pk)
    monkeypatch.undo()
    assert len(sim.sent) == 1 and sim.sent[0]["text"] == "\ufffc"
    # The simulator's history, like a real relay's, has no tempGuid: the file name tells.
    assert messages_reconcile_stuck(now=later(minutes=10))["sent"] == 1
    message.refresh_from_db()
    assert (message.status, message.external_message_id) == ("sent", sim.sent[0]["guid"])
    assert len(sim.sent) == 1
    assert usage_total(line) == 1


def test_an_attachment_send_is_found_by_the_attachment_temp_guid(acme, line, sim, monkeypatch):
    message = message_enqueue(
        workspace=acme, recipient_phone="+14155550102",
        attachment_urls=["https://files.example.com/a.png", "https://files.example.com/b.png"],
    )  # fmt: skip
    claim(message)
    t0 = stuck_after_the_relay_call(message, body="")
    relay = HistoryRelay([
        relay_item("SECOND", t0 + 5, text="\ufffc",
                   tempGuid=sending.attachment_temp_guid(message, 1)),
    ])  # fmt: skip
    monkeypatch.setattr(sending, "get_client", lambda line: relay)
    assert messages_reconcile_stuck(now=later(minutes=10))["sent"] == 1
    assert Message.objects.get(pk=message.pk).external_message_id == "SECOND"


def test_an_ambiguous_history_is_never_resent(acme, line, sim, twilio, monkeypatch):
    message = message_enqueue(
        workspace=acme, body="Lost", recipient_phone="+14155550102",
        send_fallback_sms_on_failed=True,
    )  # fmt: skip
    claim(message)
    t0 = stuck_after_the_relay_call(message)
    relay = HistoryRelay([relay_item("A", t0 + 1), relay_item("B", t0 + 2)])
    monkeypatch.setattr(sending, "get_client", lambda line: relay)
    nothing = {"requeued": 0, "sent": 0, "failed": 0}
    assert messages_reconcile_stuck(now=later(minutes=10)) == nothing
    assert Message.objects.get(pk=message.pk).status == "sending"
    # Still undecided much later: failed with the reason, without a fallback SMS.
    with responses.RequestsMock():
        assert messages_reconcile_stuck(now=later(minutes=90))["failed"] == 1
    message.refresh_from_db()
    assert message.status == "failed"
    assert "Could not confirm" in message.error_message
    assert "2 relay messages match" in message.error_message
    assert message.fallback_sms_status == ""
    assert sim.sent == []


def test_a_history_longer_than_the_pages_read_is_undetermined(acme, line, sim, monkeypatch):
    message = message_enqueue(workspace=acme, body="Lost", recipient_phone="+14155550102")
    claim(message)
    t0 = stuck_after_the_relay_call(message)
    monkeypatch.setattr(sending, "RECONCILE_MAX_PAGES", 2)
    monkeypatch.setattr(sending, "RECONCILE_PAGE", 10)
    relay = HistoryRelay([relay_item(f"X{i}", t0 + i, address="+14155550104") for i in range(30)])
    monkeypatch.setattr(sending, "get_client", lambda line: relay)
    assert messages_reconcile_stuck(now=later(minutes=10))["requeued"] == 0
    assert Message.objects.get(pk=message.pk).status == "sending"


class AnswerLost:
    """The relay sends the message, then the answer is an error (`error`)."""

    def __init__(self, client, error, send=True):
        self.client, self.error, self.send = client, error, send

    def send_text(self, **kwargs):
        if self.send:
            self.client.send_text(**kwargs)
        raise self.error

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.parametrize(
    "error",
    [
        RelayError("Transaction timeout", permanent=False, status=504,
                   error_type="Gateway Timeout"),
        RelayError("Message is already queued to be sent (Temp GUID: x)!", permanent=True,
                   status=400, error_type="Validation Error"),
    ],
    ids=["gateway-timeout", "temp-guid-in-flight"],
)  # fmt: skip
def test_an_unknown_send_outcome_is_looked_up_not_retried_or_failed(
    acme, line, sim, twilio, monkeypatch, make_endpoint, error, django_capture_on_commit_callbacks
):
    make_endpoint(acme, "http://127.0.0.1:9/hooks", events=["message.failed"])
    message = message_enqueue(
        workspace=acme, body="Maybe", recipient_phone="+14155550102",
        send_fallback_sms_on_failed=True,
    )  # fmt: skip
    claim(message)
    real_get_client = sending.get_client
    monkeypatch.setattr(
        sending, "get_client", lambda line: AnswerLost(real_get_client(line), error)
    )
    with responses.RequestsMock() as no_twilio, django_capture_on_commit_callbacks(execute=True):
        no_twilio.add_passthru(sim.url)
        assert message_send(message_id=message.pk) == "sending"
    message.refresh_from_db()
    assert (message.status, message.attempts, message.fallback_sms_status) == ("sending", 0, "")
    assert error.message in message.error_message
    assert not WebhookDelivery.objects.filter(event="message.failed").exists()
    assert usage_total(line) == 1  # held: the relay may have sent it
    monkeypatch.undo()
    assert messages_reconcile_stuck(now=later(minutes=10))["sent"] == 1
    message.refresh_from_db()
    assert (message.status, message.external_message_id) == ("sent", sim.sent[0]["guid"])
    assert len(sim.sent) == 1


# Status only moves forward


def test_status_never_moves_backwards(acme, line, sim, monkeypatch):
    message = message_enqueue(workspace=acme, body="Hi", recipient_phone="+14155550102")
    claim(message)
    real_get_client = sending.get_client

    class ReceiptFirst:
        """The relay's delivery receipt overtakes the send's own answer."""

        def __init__(self, client):
            self.client = client

        def send_text(self, **kwargs):
            sent = self.client.send_text(**kwargs)
            assert message_advance(message_id=message.pk, new_status="delivered")
            return sent

    monkeypatch.setattr(sending, "get_client", lambda line: ReceiptFirst(real_get_client(line)))
    assert message_send(message_id=message.pk) == "delivered"
    message.refresh_from_db()
    assert message.status == "delivered"
    assert message.external_message_id
    assert message.sent_at is not None
    assert message_advance(external_id=message.external_message_id, new_status="read")
    assert not message_advance(message_id=message.pk, new_status="delivered")
    assert not message_advance(message_id=message.pk, new_status="sent")
    message.refresh_from_db()
    assert (message.status, message.read_at is not None) == ("read", True)


@pytest.mark.parametrize("first_event", ["new-message", "updated-message"])
def test_a_webhook_before_the_send_answer_still_records_the_conversation(
    acme, line, sim, monkeypatch, first_event
):
    """The relay posts its webhook before the send's HTTP answer comes back."""
    from messaging.inbound import relay_event_handle

    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    message = message_enqueue(workspace=acme, body="Hi", lead=lead)
    claim(message)
    real_get_client = sending.get_client

    class WebhookFirst:
        def __init__(self, client):
            self.client = client

        def send_text(self, **kwargs):
            sent = self.client.send_text(**kwargs)
            data = dict(sent.raw)
            if first_event == "updated-message":
                data.pop("tempGuid", None)
                data["dateDelivered"] = data["dateCreated"] + 1
                # The receipt can only find the row by guid, which the webhook-first
                # `new-message` (carrying the tempGuid) would have stored.
                Message.objects.filter(pk=message.pk).update(external_message_id=sent.guid)
            relay_event_handle(line=line, event_type=first_event, data=data)
            return sent

    monkeypatch.setattr(sending, "get_client", lambda line: WebhookFirst(real_get_client(line)))
    expected = "sent" if first_event == "new-message" else "delivered"
    assert message_send(message_id=message.pk) == expected
    message.refresh_from_db()
    assert message.status == expected
    assert message.external_message_id == sim.sent[0]["guid"]
    conversation = Conversation.objects.get(workspace=acme, address="+14155550102")
    assert conversation.chat_guid == "iMessage;-;+14155550102"
    assert conversation.line_id == line.pk
    assert conversation.lead_id == lead.pk
    assert conversation.last_message_text == "Hi"


@pytest.mark.parametrize(
    ("chat_guid", "stored"),
    [
        ("iMessage;+;chat493028371", ""),
        ("iMessage;-;+14155550104", ""),
        ("any;-;+14155550102", "any;-;+14155550102"),
        ("iMessage;-;+14155550102", "iMessage;-;+14155550102"),
    ],
)
def test_a_send_stores_only_the_direct_chat_of_its_address(acme, line, chat_guid, stored):
    message = message_enqueue(workspace=acme, body="Hi", recipient_phone="+14155550102")
    sending.conversation_record_send(
        message=message, address="+14155550102", line=line, chat_guid=chat_guid,
        at=timezone.now(),
    )  # fmt: skip
    conversation = Conversation.objects.get(workspace=acme, address="+14155550102")
    assert (conversation.chat_guid, conversation.line_id) == (stored, line.pk)


def test_a_late_failure_callback_fails_a_sent_message_and_sends_the_fallback(
    acme, line, sim, twilio, outbox, passthrough_relay, django_capture_on_commit_callbacks
):
    twilio_ok(passthrough_relay, sid="SMlate")
    message = outbox(acme, recipient_phone="+14155550102", send_fallback_sms_on_failed=True)
    assert message.status == "sent"
    with django_capture_on_commit_callbacks(execute=True):
        assert message_advance(
            external_id=message.external_message_id, new_status="failed", error="Not delivered"
        )
    message.refresh_from_db()
    assert (message.status, message.error_message) == ("failed", "Not delivered")
    assert (message.fallback_sms_status, message.fallback_sms_sid) == ("sent", "SMlate")


def test_a_failure_report_after_delivery_is_ignored(
    acme, line, sim, twilio, outbox, make_endpoint, django_capture_on_commit_callbacks
):
    make_endpoint(acme, "http://127.0.0.1:9/hooks", events=["message.failed"])
    message = outbox(acme, recipient_phone="+14155550102", send_fallback_sms_on_failed=True)
    assert message_advance(message_id=message.pk, new_status="delivered")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert not message_advance(message_id=message.pk, new_status="failed", error="late")
        assert not message_advance(message_id=message.pk, new_status="fallback")
    assert callbacks == []
    message.refresh_from_db()
    assert (message.status, message.fallback_sms_status) == ("delivered", "")
    assert not WebhookDelivery.objects.filter(event="message.failed").exists()


def test_only_a_waiting_message_can_be_cancelled(acme, line, sim):
    message = message_enqueue(workspace=acme, body="Hi", recipient_phone="+14155550102")
    claim(message)
    assert message.status == "sending"
    assert not message_advance(message_id=message.pk, new_status="cancelled")
    assert Message.objects.get(pk=message.pk).status == "sending"
    with pytest.raises(ValueError):
        message_advance(message_id=message.pk, new_status="pending")


# Never sent to opted-out / do-not-contact recipients


def test_a_recipient_added_to_do_not_contact_after_dispatch_is_cancelled(acme, line, sim):
    message = message_enqueue(workspace=acme, body="Hi", recipient_phone="+14155550102")
    claim(message)
    DoNotContact.objects.create(workspace=acme, value="+14155550102", kind="phone")
    assert message_send(message_id=message.pk) == "cancelled"
    message.refresh_from_db()
    assert "do-not-contact" in message.cancel_reason
    assert sim.sent == []
    assert usage_total(line) == 0


def test_a_lead_opting_out_after_dispatch_is_cancelled(acme, line, sim):
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    message = message_enqueue(workspace=acme, body="Hi", lead=lead)
    claim(message)
    lead.opted_out = True
    lead.save()
    assert message_send(message_id=message.pk) == "cancelled"
    assert sim.sent == []


def reply_from(lead, text="Not interested", guid="IN-1"):
    from messaging.inbound import inbound_record

    return inbound_record(workspace=lead.workspace, address=lead.phone, text=text,
                          channel="imessage", external_id=guid)  # fmt: skip


def test_a_reply_while_a_stop_on_reply_message_is_claimed_means_it_is_never_sent(acme, line, sim):
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    message = message_enqueue(workspace=acme, body="Step 2", lead=lead, stop_on_reply=True)
    claim(message)
    assert message.status == "sending"
    reply_from(lead)
    assert Message.objects.get(pk=message.pk).status == "sending"  # claimed: not waiting
    assert message_send(message_id=message.pk) == "cancelled"
    message.refresh_from_db()
    assert message.cancel_reason == "The lead replied"
    assert sim.sent == []
    assert usage_total(line) == 0


def test_a_reply_cancels_waiting_stop_on_reply_steps_and_announces_it(
    acme, django_capture_on_commit_callbacks
):
    from messaging.signals import message_status_changed

    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    step = message_enqueue(workspace=acme, body="Step 2", lead=lead, stop_on_reply=True,
                           campaign_id="c" * 24, scheduled_date=later(minutes=60))  # fmt: skip
    other = message_enqueue(workspace=acme, body="Not a step", lead=lead,
                            scheduled_date=later(minutes=60))  # fmt: skip
    heard = []

    def receiver(sender, **kwargs):
        heard.append((kwargs["message_id"], kwargs["status"], kwargs["campaign_id"]))

    message_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            reply_from(lead)
    finally:
        message_status_changed.disconnect(receiver)
    assert heard == [(step.pk, "cancelled", "c" * 24)]
    step.refresh_from_db()
    assert (step.status, step.cancel_reason) == ("cancelled", "The lead replied")
    assert Message.objects.get(pk=other.pk).status == "scheduled"


def test_a_reply_during_the_availability_check_stops_the_send(acme, line, sim, monkeypatch):
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    message = message_enqueue(workspace=acme, body="Step 2", lead=lead, stop_on_reply=True)
    claim(message)
    choose = sending._choose_imessage_address

    def reply_meanwhile(*args):
        found = choose(*args)
        reply_from(lead)
        return found

    monkeypatch.setattr(sending, "_choose_imessage_address", reply_meanwhile)
    assert message_send(message_id=message.pk) == "cancelled"
    assert sim.sent == []


def test_webhook_event_on_sent(acme, line, sim, outbox, make_endpoint):
    make_endpoint(acme, "http://127.0.0.1:9/hooks", events=["message.sent"])
    message = outbox(acme, recipient_phone="+14155550102", body="Hello")
    payload = WebhookDelivery.objects.get(event="message.sent").payload
    assert payload["messageId"] == message.pk
    assert json.dumps(payload)


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_same_send_task_send_once(acme, make_sim_line, sim):
    import threading

    from django.conf import settings
    from django.db import connection

    if not settings.IS_POSTGRES:
        pytest.skip("needs real concurrent transactions (Postgres)")
    line = make_sim_line(acme)
    message = Message.objects.create(
        workspace=acme, line=line, status="sending", recipient_phone="+14155550102",
        body="Race", rendered_body="Race", sending_started_at=timezone.now(),
    )  # fmt: skip
    barrier = threading.Barrier(2)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(message_send(message_id=message.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["sent", "skipped"]
    assert len(sim.sent) == 1


def test_an_unexpected_error_before_the_channel_call_fails_the_message(
    acme, outbox, settings, monkeypatch
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    def broken(message, **kwargs):
        raise KeyError("lead")

    monkeypatch.setattr(sending, "_check_recipient_allowed", broken)
    message = outbox(acme, message_type="email", recipient_email="d@example.com", subject="Hi")
    assert message.status == "failed"
    assert message.error_message == "The send failed unexpectedly: KeyError: 'lead'"
    assert len(mail.outbox) == 0


def test_an_unexpected_error_in_the_channel_call_fails_the_message_without_a_resend(
    acme, outbox, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Written past the API's check: the email backend refuses the header.
    message = outbox(
        acme, message_type="email", recipient_email="d@example.com", subject="Hi\r\nBcc: x@y.z",
        send_fallback_sms_on_failed=True,
    )  # fmt: skip
    assert message.status == "failed"
    assert message.error_message.startswith("The send failed unexpectedly: BadHeaderError: ")
    assert message.error_message.endswith("; not resent to avoid a duplicate")
    assert message.fallback_sms_status == ""
    assert len(mail.outbox) == 0
    assert messages_reconcile_stuck(now=later(minutes=60)) == {
        "requeued": 0, "sent": 0, "failed": 0,
    }  # fmt: skip
