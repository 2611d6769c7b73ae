"""A line whose delivery receipts stop coming is held after a few sends, not after
each of them timed out: end to end with the relay simulator (webhooks, API, Lines
page), and the time logic behind it."""

from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.utils import timezone

from lines import safety
from lines.models import Line
from messaging.models import Message
from messaging.safety import lines_hold_unconfirmed
from messaging.services import message_advance

pytestmark = pytest.mark.django_db

ON_IMESSAGE = [f"+141555501{n:02d}" for n in range(2, 22, 2)]


def send(api, capture, phone, text="Hello"):
    with capture(execute=True):
        response = api.post(
            "/api/messages", {"message": text, "recipientPhone": phone}, format="json"
        )
    assert response.status_code in (200, 201), response.json()
    return Message.objects.get(pk=response.json()["message"]["_id"])


def configure(sim, **switches):
    assert requests.post(f"{sim.url}/sim/config", json=switches, timeout=5).status_code == 200


def hold_check(capture, minutes):
    """The hold check of the beat task, `minutes` from now."""
    with capture(execute=True):
        return lines_hold_unconfirmed(now=timezone.now() + timedelta(minutes=minutes))


@pytest.fixture
def hooks(acme, receiver, make_endpoint):
    return make_endpoint(acme, receiver.url)


def test_a_silent_line_is_held_after_five_sends_and_nothing_more_goes_to_it(
    api, alice_client, sim, line, hooks, receiver, django_capture_on_commit_callbacks
):
    configure(sim, silent_undelivered=True)
    messages = [send(api, django_capture_on_commit_callbacks, p) for p in ON_IMESSAGE[:5]]
    assert {Message.objects.get(pk=m.pk).status for m in messages} == {"sent"}

    # Receipts may still come within the floor of two minutes.
    assert hold_check(django_capture_on_commit_callbacks, 1) == []
    assert hold_check(django_capture_on_commit_callbacks, 3) == [line.pk]

    body = api.get(f"/api/lines/{line.pk}").json()
    assert body["healthCheck"]["status"] == "down"  # out of rotation, as published
    assert body["safety"]["state"] == "held"
    assert body["safety"]["action"] == "held"
    assert body["safety"]["reason"].startswith("Awaiting delivery receipts: the last 5 iMessages")
    events = receiver.events("line.spam_risk")
    assert [e["data"]["action"] for e in events] == ["held"]
    page = alice_client.get("/lines/").content.decode()
    assert "Held: awaiting delivery receipts" in page
    assert "Awaiting delivery receipts" in page

    # A new send waits instead of going into the silent line.
    later = send(api, django_capture_on_commit_callbacks, ON_IMESSAGE[5])
    assert Message.objects.get(pk=later.pk).status == "scheduled"
    assert len(sim.sent) == 5


def test_a_receipt_releases_the_hold_at_once(
    api, sim, line, hooks, receiver, django_capture_on_commit_callbacks
):
    configure(sim, silent_undelivered=True)
    messages = [send(api, django_capture_on_commit_callbacks, p) for p in ON_IMESSAGE[:5]]
    hold_check(django_capture_on_commit_callbacks, 3)
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.HELD

    # One receipt comes late (the relay's webhook or poll): the line works after all.
    with django_capture_on_commit_callbacks(execute=True):
        message_advance(message_id=messages[2].pk, new_status="delivered")
    line.refresh_from_db()
    assert line.health_status in (Line.Health.HEALTHY, Line.Health.DEGRADED)
    assert line.safety_action == ""
    assert receiver.events("line.recovered")[-1]["data"]["reason"] == "A delivery receipt came"
    # The two sends before the receipt are not "in a row" any more.
    assert hold_check(django_capture_on_commit_callbacks, 4) == []


def test_a_held_line_is_quarantined_when_its_sends_go_undelivered(
    api, sim, line, django_capture_on_commit_callbacks
):
    configure(sim, silent_undelivered=True)
    for phone in ON_IMESSAGE[:5]:
        send(api, django_capture_on_commit_callbacks, phone)
    hold_check(django_capture_on_commit_callbacks, 3)
    # Minutes later, still no receipt: still held, nothing flagged yet.
    assert hold_check(django_capture_on_commit_callbacks, 10) == []
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.HELD
    assert not Message.objects.filter(undelivered_at__isnull=False).exists()

    from messaging.safety import messages_mark_undelivered

    with django_capture_on_commit_callbacks(execute=True):
        messages_mark_undelivered(now=timezone.now() + timedelta(minutes=31))
    line.refresh_from_db()
    assert line.health_status == Line.Health.QUARANTINED
    assert "5 in a row" in line.safety_action_reason
    assert len(sim.sent) == 5


def test_an_owner_override_releases_the_hold_and_keeps_it_off(
    api, sim, line, django_capture_on_commit_callbacks
):
    configure(sim, silent_undelivered=True)
    for phone in ON_IMESSAGE[:5]:
        send(api, django_capture_on_commit_callbacks, phone)
    hold_check(django_capture_on_commit_callbacks, 3)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/lines/{line.pk}/safety-override")
    assert response.status_code == 200
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.HEALTHY
    assert hold_check(django_capture_on_commit_callbacks, 5) == []
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.HEALTHY


def test_no_hold_with_line_safety_off_or_fewer_sends_than_the_limit(
    api, sim, line, settings, django_capture_on_commit_callbacks
):
    configure(sim, silent_undelivered=True)
    for phone in ON_IMESSAGE[:4]:
        send(api, django_capture_on_commit_callbacks, phone)
    assert hold_check(django_capture_on_commit_callbacks, 5) == []
    send(api, django_capture_on_commit_callbacks, ON_IMESSAGE[4])
    settings.LINE_SAFETY_ENABLED = False
    assert hold_check(django_capture_on_commit_callbacks, 5) == []
    settings.LINE_SAFETY_ENABLED = True
    settings.LINE_UNCONFIRMED_SENDS_LIMIT = 0
    assert hold_check(django_capture_on_commit_callbacks, 5) == []


# The time logic


def test_receipt_wait_is_twice_the_line_s_usual_latency_within_floor_and_ceiling(settings):
    settings.LINE_RECEIPT_WAIT_MIN_SECONDS = 120
    settings.UNDELIVERED_AFTER_MINUTES = 30
    assert safety.receipt_wait([]) == timedelta(seconds=120)  # nothing learnt: the floor
    assert safety.receipt_wait([2, 3, 5]) == timedelta(seconds=120)  # fast receipts: floor
    # Nine in ten took up to 100 s; one straggler (a phone that was off) is ignored.
    latencies = [100] * 9 + [5000]
    assert safety.receipt_wait(latencies) == timedelta(seconds=200)
    assert safety.receipt_wait([1500] * 10) == timedelta(minutes=30)  # the ceiling
    assert safety.receipt_wait([-60, -60]) == timedelta(seconds=120)  # skewed relay clock


def test_only_overdue_sends_after_the_latest_confirmed_one_count():
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    sent = [now - timedelta(minutes=m) for m in (10, 8, 6, 4, 2, 1)]
    wait = timedelta(minutes=3)
    assert safety.overdue_in_a_row(sent_at=sent, last_confirmed=None, wait=wait, now=now) == 4
    # A send at 7 minutes ago got its receipt: the two before it are not in the run.
    last = now - timedelta(minutes=7)
    assert safety.overdue_in_a_row(sent_at=sent, last_confirmed=last, wait=wait, now=now) == 2
    # Exactly `wait` old is overdue.
    assert (
        safety.overdue_in_a_row(sent_at=[now - wait], last_confirmed=None, wait=wait, now=now) == 1
    )


def test_a_hold_whose_sends_went_undelivered_short_of_quarantine_is_lifted(
    api, sim, line, settings, django_capture_on_commit_callbacks
):
    from messaging.safety import messages_mark_undelivered

    settings.LINE_QUARANTINE_AFTER_FAILURES = 10
    configure(sim, silent_undelivered=True)
    for phone in ON_IMESSAGE[:5]:
        send(api, django_capture_on_commit_callbacks, phone)
    hold_check(django_capture_on_commit_callbacks, 3)
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.HELD
    with django_capture_on_commit_callbacks(execute=True):
        messages_mark_undelivered(now=timezone.now() + timedelta(minutes=31))
    # Five undelivered in a row are short of this workspace's quarantine: the hold has
    # no sends left to wait for, and the line goes back into rotation (degraded).
    assert hold_check(django_capture_on_commit_callbacks, 32) == []
    line.refresh_from_db()
    assert line.safety_action != Line.SafetyAction.HELD
    assert line.is_usable
