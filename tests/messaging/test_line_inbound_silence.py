"""Inbound silence while outbound continues: a line that keeps sending and hears
nothing back for a week is shown degraded with its reason (API, spam monitor, Lines
page), stays in rotation, and is healthy again after a reply."""

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from lines import safety
from lines.models import Line
from lines.services import line_health_check
from messaging.inbound import relay_poll_line
from messaging.models import Message

pytestmark = pytest.mark.django_db

ON_IMESSAGE = [f"+141555501{n:02d}" for n in range(2, 12, 2)]


def send(api, capture, phone):
    with capture(execute=True):
        response = api.post(
            "/api/messages", {"message": "Hello", "recipientPhone": phone}, format="json"
        )
    assert response.status_code in (200, 201), response.json()
    return Message.objects.get(pk=response.json()["message"]["_id"])


def test_a_week_of_sends_with_no_reply_degrades_the_line_until_a_reply(
    api, alice_client, sim, line, settings, django_capture_on_commit_callbacks
):
    settings.LINE_SILENCE_MIN_SENT = 5
    for phone in ON_IMESSAGE:
        send(api, django_capture_on_commit_callbacks, phone)
    time.sleep(0.2)
    relay_poll_line(line=Line.objects.get(pk=line.pk))  # the receipts: all delivered
    line_health_check(line=Line.objects.get(pk=line.pk))

    body = api.get(f"/api/lines/{line.pk}").json()
    assert body["safety"]["state"] == "degraded"
    assert body["safety"]["reason"] == "No reply in 7 days to 5 messages"
    assert body["healthCheck"]["status"] == "healthy"  # still in rotation
    monitor = api.get("/api/lines/spam-monitor").json()["lines"][0]
    assert (monitor["sentLast7d"], monitor["repliesLast7d"], monitor["replyRate"]) == (5, 0, 0.0)
    assert monitor["spamRisk"] == "low"
    page = alice_client.get("/lines/").content.decode()
    assert "No reply in 7 days to 5 messages" in page

    # One recipient answers: the line hears back, and is healthy again.
    response = requests.post(
        f"{sim.url}/sim/inbound", json={"from": ON_IMESSAGE[0], "text": "Who is this?"}, timeout=5
    )
    assert response.status_code == 200
    relay_poll_line(line=Line.objects.get(pk=line.pk))
    line_health_check(line=Line.objects.get(pk=line.pk))
    body = api.get(f"/api/lines/{line.pk}").json()
    assert body["safety"]["state"] == "healthy"


def test_fewer_sends_or_sends_older_than_a_week_are_no_silence(line, settings):
    settings.LINE_SILENCE_MIN_SENT = 100
    now = timezone.now()
    safety.line_evidence_record(line_id=line.pk, kind="sent", amount=99, at=now)
    line_health_check(line=Line.objects.get(pk=line.pk))
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.HEALTHY

    week_ago = now - timedelta(days=8)
    safety.line_evidence_record(line_id=line.pk, kind="sent", amount=100, at=week_ago)
    line_health_check(line=Line.objects.get(pk=line.pk))
    assert Line.objects.get(pk=line.pk).health_status == Line.Health.HEALTHY

    safety.line_evidence_record(line_id=line.pk, kind="sent", amount=1, at=now)
    line_health_check(line=Line.objects.get(pk=line.pk))
    line.refresh_from_db()
    assert line.health_status == Line.Health.DEGRADED
    assert line.health_detail == "No reply in 7 days to 100 messages"
