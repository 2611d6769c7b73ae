"""The send task against the relay simulator (real HTTP) and Twilio (mocked at HTTP
with `responses`): fallback, retries, permanent errors, duplicates, the sweeper."""

import json
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import responses
from django.core import mail
from django.utils import timezone

from leads.services import lead_get_or_create
from lines.models import LineUsage
from lines.services import line_health_check
from messaging import sending
from messaging.dispatch import dispatch_due
from messaging.models import DoNotContact, Message
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
    assert second.attempts == 1
    assert second.due_at > timezone.now()
    assert "relay" in second.error_message.lower()
    assert usage_total(line) == 2  # the third still holds its slot until it runs
    assert message_send(message_id=messages[2].pk) == "scheduled"
    assert usage_total(line) == 1


def test_a_relay_timeout_is_retried_five_times_then_fails_with_fallback_sms(
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


def test_a_failed_message_without_the_flag_gets_no_sms(acme, line, sim, twilio, outbox):
    sim.configure(send_timeout=True, timeout_delay=0)
    message = message_enqueue(workspace=acme, body="Hi", recipient_phone="+14155550102")
    Message.objects.filter(pk=message.pk).update(attempts=4)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(sim.url)
        dispatch_due(now=timezone.now())
        assert message_send(message_id=message.pk) == "failed"
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


def test_a_worker_killed_before_the_send_is_requeued_and_sent_once(acme, line, sim):
    message = message_enqueue(workspace=acme, body="Later", recipient_phone="+14155550102")
    claim(message)
    assert message.status == "sending"  # the worker died here
    assert messages_reconcile_stuck(now=later(minutes=1))["requeued"] == 0  # not stuck yet
    outcome = messages_reconcile_stuck(now=later(minutes=10))
    assert outcome["requeued"] == 1
    message.refresh_from_db()
    assert message.status == "pending"
    assert usage_total(line) == 0
    claim(message, now=later(minutes=10))
    assert message_send(message_id=message.pk) == "sent"
    assert len(sim.sent) == 1
    assert usage_total(line) == 1


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
    claim(message, now=later(minutes=10))
    assert message_send(message_id=message.pk) == "sent"
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
