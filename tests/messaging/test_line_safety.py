"""Line safety end to end with the relay simulator: a signed-out Mac and a line whose
sends go silently undelivered are detected, taken out of rotation with their reason,
announced (signed webhooks, email to owners and admins), and released again."""

from datetime import timedelta

import pytest
import requests
from django.core import mail
from django.utils import timezone

from lines import safety
from lines.models import Line
from lines.services import line_health_check
from lines.simulator import RelaySimulator
from messaging.inbound import relay_poll_line
from messaging.models import Message
from messaging.safety import messages_mark_undelivered
from tests.lines.relay_fixtures import PASSWORD
from tests.messaging.conftest import verify_signature

pytestmark = pytest.mark.django_db

ON_IMESSAGE = ["+14155550102", "+14155550104", "+14155550106", "+14155550108", "+14155550110"]


def send(api, capture, phone, text="Hello", **extra):
    with capture(execute=True):
        response = api.post(
            "/api/messages", {"message": text, "recipientPhone": phone, **extra}, format="json"
        )
    # 200 when the recipient is a lead already (an earlier send made it), else 201.
    assert response.status_code in (200, 201), response.json()
    return Message.objects.get(pk=response.json()["message"]["_id"])


def configure(sim, **switches):
    response = requests.post(f"{sim.url}/sim/config", json=switches, timeout=5)
    assert response.status_code == 200


def line_json(api, line):
    return api.get(f"/api/lines/{line.pk}").json()


@pytest.fixture
def second_sim():
    with RelaySimulator(password=PASSWORD, delivery_delay=0.05) as simulator:
        yield simulator


@pytest.fixture
def hooks(acme, receiver, make_endpoint):
    return make_endpoint(acme, receiver.url)


def test_a_signed_out_line_is_quarantined_before_its_first_send(
    api, acme, alice, sim, line, hooks, receiver, django_capture_on_commit_callbacks
):
    configure(sim, imessage_signed_in=False)

    message = send(api, django_capture_on_commit_callbacks, ON_IMESSAGE[0])

    # The Mac answers but is signed out: caught before its "no" could mark the
    # recipient as not on iMessage; the message waits for a line.
    message.refresh_from_db()
    assert message.status == "scheduled"
    assert message.checked_addresses == []
    assert len(sim.sent) == 0
    line.refresh_from_db()
    assert line.health_status == Line.Health.QUARANTINED
    assert line.safety_action == Line.SafetyAction.QUARANTINED
    body = line_json(api, line)
    assert body["healthCheck"]["status"] == "down"
    assert body["safety"]["state"] == "quarantined"
    assert body["safety"]["action"] == "quarantined"
    assert "not signed in" in body["safety"]["reason"]
    assert body["safety"]["actionUntil"]

    [event] = receiver.events("line.quarantined")
    assert event["data"]["lineId"] == line.pk
    assert "not signed in" in event["data"]["reason"]
    assert all(verify_signature(hooks.secret, r) for r in receiver.requests)
    [email] = mail.outbox
    assert email.to == [alice.email]
    assert "quarantined" in email.subject

    # No new sends on it: the next message waits.
    later = send(api, django_capture_on_commit_callbacks, ON_IMESSAGE[1])
    later.refresh_from_db()
    assert later.status in ("pending", "scheduled")
    assert len(sim.sent) == 0


def test_new_sends_go_to_the_healthy_line(
    api, acme, sim, second_sim, line, make_sim_line, django_capture_on_commit_callbacks
):
    other = make_sim_line(acme, simulator=second_sim, first_name="Ben")
    configure(sim, imessage_signed_in=False)
    line_health_check(line=line)
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.QUARANTINED

    messages = [send(api, django_capture_on_commit_callbacks, p) for p in ON_IMESSAGE[:3]]

    assert {Message.objects.get(pk=m.pk).line_id for m in messages} == {other.pk}
    assert len(second_sim.sent) == 3 and len(sim.sent) == 0


def test_release_after_the_cool_down_once_the_probes_pass(
    api, sim, line, hooks, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    released = []
    monkeypatch.setattr(safety, "on_line_released", lambda line: released.append(line.pk))
    configure(sim, imessage_signed_in=False)
    line_health_check(line=line)
    line.refresh_from_db()
    until = line.safety_action_until

    configure(sim, imessage_signed_in=True)
    # Probes pass but the cool-down is not over: still quarantined.
    line_health_check(line=line, now=until - timedelta(minutes=1))
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.QUARANTINED
    assert released == []

    with django_capture_on_commit_callbacks(execute=True):
        line_health_check(line=line, now=until + timedelta(minutes=1))
    line.refresh_from_db()
    assert line.health_status == Line.Health.HEALTHY
    assert line.safety_action == ""
    assert released == [line.pk]
    assert receiver.events("line.recovered")[0]["data"]["lineId"] == line.pk

    message = send(api, django_capture_on_commit_callbacks, ON_IMESSAGE[2])
    assert Message.objects.get(pk=message.pk).status == "sent"


def test_a_send_refused_by_a_mac_signed_out_meanwhile_probes_and_quarantines_it(
    api, sim, line, django_capture_on_commit_callbacks
):
    send(api, django_capture_on_commit_callbacks, ON_IMESSAGE[0])  # signed in, known now
    configure(sim, imessage_signed_in=False)
    # Within the probe interval the send path trusts its last look; the relay refuses.
    message = send(api, django_capture_on_commit_callbacks, ON_IMESSAGE[0], text="Again")

    message.refresh_from_db()
    assert message.status in ("scheduled", "failed")
    assert len(sim.sent) == 1
    line.refresh_from_db()
    assert line.health_status == Line.Health.QUARANTINED
    assert "not signed in" in line.safety_action_reason


def test_a_signed_out_relay_still_signed_out_after_the_cool_down_stays_quarantined(sim, line):
    configure(sim, imessage_signed_in=False)
    line_health_check(line=line)
    line.refresh_from_db()
    line_health_check(line=line, now=line.safety_action_until + timedelta(hours=1))
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.QUARANTINED


def test_silent_undelivered_sends_are_flagged_and_quarantine_the_line(
    api, acme, sim, line, hooks, receiver, settings, django_capture_on_commit_callbacks
):
    settings.UNDELIVERED_AFTER_MINUTES = 10
    configure(sim, silent_undelivered=True)
    messages = [send(api, django_capture_on_commit_callbacks, p) for p in ON_IMESSAGE]
    assert {Message.objects.get(pk=m.pk).status for m in messages} == {"sent"}
    relay_poll_line(line=Line.objects.get(pk=line.pk))  # nothing to learn: no receipts

    # Not yet: receipts may still come.
    assert messages_mark_undelivered(now=timezone.now() + timedelta(minutes=9)) == 0
    with django_capture_on_commit_callbacks(execute=True):
        marked = messages_mark_undelivered(now=timezone.now() + timedelta(minutes=11))
    assert marked == 5

    body = api.get(f"/api/messages/{messages[0].pk}").json()
    assert body["undelivered"] is True and body["undeliveredAt"]
    assert body["status"] == "sent"
    assert len(receiver.events("message.undelivered")) == 5
    line.refresh_from_db()
    assert line.health_status == Line.Health.QUARANTINED
    assert "5 in a row" in line.safety_action_reason
    # Three in a row halved its caps first; five quarantined it.
    risks = [e["data"]["spamRisk"] for e in receiver.events("line.spam_risk")]
    assert risks == ["medium", "high"]
    # Nothing was sent twice.
    assert len(sim.sent) == 5


def test_a_delivery_receipt_ends_the_run_of_failures(
    api, sim, line, settings, django_capture_on_commit_callbacks
):
    settings.UNDELIVERED_AFTER_MINUTES = 10
    configure(sim, silent_undelivered=True)
    for phone in ON_IMESSAGE[:3]:
        send(api, django_capture_on_commit_callbacks, phone)
    messages_mark_undelivered(now=timezone.now() + timedelta(minutes=11))
    assert Line.objects.get(pk=line.pk).send_consecutive_failures == 3
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.DEGRADED

    configure(sim, silent_undelivered=False)
    send(api, django_capture_on_commit_callbacks, ON_IMESSAGE[3])
    import time

    time.sleep(0.2)
    relay_poll_line(line=Line.objects.get(pk=line.pk))
    line.refresh_from_db()
    assert line.send_consecutive_failures == 0


def test_a_receipt_after_the_undelivered_flag_counts_as_delivered_and_nothing_is_resent(
    api, sim, line, twilio, settings, django_capture_on_commit_callbacks
):
    settings.UNDELIVERED_AFTER_MINUTES = 10
    message = send(
        api,
        django_capture_on_commit_callbacks,
        ON_IMESSAGE[0],
        sendFallbackSmsOnFailed=True,
        smsFallbackText="Hi by SMS",
    )
    messages_mark_undelivered(now=timezone.now() + timedelta(minutes=11))
    import time

    time.sleep(0.2)
    relay_poll_line(line=Line.objects.get(pk=line.pk))
    message.refresh_from_db()
    assert message.status == "delivered"
    assert message.fallback_sms_status == ""  # the relay reported delivery: no SMS
    assert len(sim.sent) == 1


def test_spam_monitor_reports_the_published_shape_and_our_additions(
    api, acme, sim, line, django_capture_on_commit_callbacks
):
    for phone in ON_IMESSAGE[:2]:
        send(api, django_capture_on_commit_callbacks, phone)
    import time

    time.sleep(0.2)
    relay_poll_line(line=Line.objects.get(pk=line.pk))
    sim.inbound(ON_IMESSAGE[0], "Sounds good")
    time.sleep(0.1)
    relay_poll_line(line=Line.objects.get(pk=line.pk))

    [item] = api.get("/api/lines/spam-monitor").json()["lines"]
    assert item == {
        "lineId": line.pk,
        "linePhone": None,
        "lineType": "byon",
        "totalSentLast24h": 2,
        "failedLast24h": 0,
        "failureRate": 0.0,
        "consecutiveFailures": 0,
        "spamRisk": "low",
        "recommendation": "Line is healthy.",
        "deliveredLast24h": 2,
        "deliveryRate": 100.0,
        "repliesLast7d": 1,
        "sentLast7d": 2,
        "replyRate": 50.0,
        "state": "healthy",
        "reason": item["reason"],
        "action": None,
        "actionReason": None,
        "actionUntil": None,
    }


def test_spam_monitor_needs_an_api_key(anon):
    assert anon.get("/api/lines/spam-monitor").status_code == 401
