"""The frequency cap: at most N messages per lead per 24 h and M per 7 days across
a workspace; a send over it is held (never dropped), says why and when, and goes
out when it fits. Clock given to the dispatcher with `now=`."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from leads.models import Lead
from lines.services import line_create
from messaging import frequency
from messaging.dispatch import dispatch_due
from messaging.frequency import Caps, held_until
from messaging.models import FrequencyCap, Message
from messaging.services import message_enqueue
from tests.threads import run_in_threads

# Later than the real clock, so messages written now are due.
T = datetime(2027, 1, 6, 15, 0, tzinfo=UTC)
H = timedelta(hours=1)


# The rule


def test_nothing_sent_or_under_the_cap_goes_now():
    assert held_until([], Caps(2, 5), T) is None
    assert held_until([T - H], Caps(2, 5), T) is None


def test_over_the_daily_cap_it_waits_until_the_oldest_send_is_a_day_old():
    until, why = held_until([T - 3 * H, T - H], Caps(2, 5), T)
    assert until == T + 21 * H
    assert why == "Frequency cap: this lead already got 2 messages in 24 hours"
    # Exactly 24 h later the oldest no longer counts.
    assert held_until([T - 3 * H, T - H], Caps(2, 5), T + 21 * H) is None
    assert held_until([T - 3 * H, T - H], Caps(2, 5), T + 21 * H - timedelta(seconds=1))


def test_the_weekly_cap_counts_seven_days_and_the_later_wait_wins():
    sent = [T - timedelta(days=d) for d in (6, 5, 4, 3)] + [T - H]
    until, why = held_until(sent, Caps(2, 5), T)
    assert until == T + timedelta(days=1)  # the send 6 days ago ages out
    assert "5 messages in 7 days" in why
    assert held_until(sent, Caps(0, 0), T) is None
    assert held_until(sent, Caps(0, 6), T) is None


def test_with_several_over_the_cap_one_more_fits_only_when_enough_aged_out():
    sent = [T - 5 * H, T - 4 * H, T - 3 * H]
    assert held_until(sent, Caps(2, 0), T)[0] == T - 4 * H + 24 * H


# Through the dispatcher and the API

pytestmark = pytest.mark.django_db


@pytest.fixture
def capped(acme):
    frequency.frequency_cap_update(workspace=acme, per_day=2, per_week=5)
    line_create(
        workspace=acme, server_url="http://127.0.0.1:9", device_gap_seconds=0,
        contact_gap_seconds=0,
    )  # fmt: skip
    return acme


@pytest.fixture
def api(acme):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {acme.raw_key}")
    return client


def send(api, text, **fields):
    fields.setdefault("recipientPhone", "+14155550102")
    response = api.post("/api/messages", {"message": text, **fields}, format="json")
    # 200 once an earlier send made the recipient a lead, else 201.
    assert response.status_code in (200, 201), response.json()
    assert response.json()["status"] == "pending"  # answered as published, held or not
    return response.json()["message"]["_id"]


def test_a_send_over_the_cap_is_held_shows_why_and_when_and_goes_out_then(capped, api):
    ids = [send(api, f"Note {n}") for n in range(3)]
    result = dispatch_due(now=T)
    assert sorted(result.sending) == sorted(ids[:2])
    assert result.waiting == {ids[2]: T + timedelta(hours=24)}
    body = api.get(f"/api/messages/{ids[2]}").json()
    assert body["status"] == "scheduled"
    assert body["scheduledDate"] == "2027-01-07T15:00:00.000Z"
    assert body["holdReason"] == "Frequency cap: this lead already got 2 messages in 24 hours"
    # Not before then; then it goes, and the reason is gone.
    assert dispatch_due(now=T + timedelta(hours=23)).claimed == 0
    assert dispatch_due(now=T + timedelta(hours=24)).sending == [ids[2]]
    assert api.get(f"/api/messages/{ids[2]}").json()["holdReason"] is None


def test_every_channel_and_campaign_counts_for_the_lead(capped, api):
    lead = Lead.objects.create(workspace=capped, phone="+14155550102", email="ada@example.com")
    message_enqueue(workspace=capped, lead=lead, body="From a campaign", campaign_id="c" * 24,
                    step_index=0, recipient_phone=lead.phone)  # fmt: skip
    send(api, "An email", messageType="email", recipientEmail="ada@example.com",
         recipientPhone="", leadId=lead.pk)  # fmt: skip
    send(api, "One more", leadId=lead.pk)
    result = dispatch_due(now=T)
    assert len(result.sending) == 2
    assert len(result.waiting) == 1  # whichever of the three came third


def test_earlier_sends_of_the_week_count(capped, api):
    lead = Lead.objects.create(workspace=capped, phone="+14155550102")
    Message.objects.bulk_create(
        [
            Message(workspace=capped, lead=lead, recipient_phone=lead.phone, body=f"old {d}",
                    status="delivered", sending_started_at=T - timedelta(days=d))
            for d in (6, 5, 4, 3, 2)
        ]
    )  # fmt: skip
    held = send(api, "Sixth this week", leadId=lead.pk)
    assert dispatch_due(now=T).waiting == {held: T + timedelta(days=1)}
    assert "5 messages in 7 days" in Message.objects.get(pk=held).hold_reason


def test_an_answer_to_a_lead_who_just_wrote_is_not_held(capped, api):
    lead = Lead.objects.create(workspace=capped, phone="+14155550102", replied_at=T - H)
    ids = [send(api, f"Answer {n}", leadId=lead.pk) for n in range(3)]
    assert sorted(dispatch_due(now=T).sending) == sorted(ids)


def test_no_cap_holds_nothing(acme, api):
    line_create(workspace=acme, server_url="http://127.0.0.1:9", device_gap_seconds=0,
                contact_gap_seconds=0)  # fmt: skip
    ids = [send(api, f"Note {n}") for n in range(4)]
    assert len(dispatch_due(now=T).sending) == 4
    assert not FrequencyCap.objects.exists()
    assert all(not m.hold_reason for m in Message.objects.filter(pk__in=ids))


def test_the_global_defaults_apply_without_a_workspace_row(acme, api, settings):
    settings.FREQUENCY_CAP_PER_DAY = 1
    line_create(workspace=acme, server_url="http://127.0.0.1:9", device_gap_seconds=0,
                contact_gap_seconds=0)  # fmt: skip
    ids = [send(api, f"Note {n}") for n in range(2)]
    assert len(dispatch_due(now=T).sending) == 1
    assert Message.objects.filter(pk__in=ids, status="scheduled").exclude(hold_reason="").count()


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_cannot_both_pass_the_cap_for_one_lead(acme, monkeypatch):
    if not settings.IS_POSTGRES:
        pytest.skip("row locks need Postgres")
    monkeypatch.setattr("messaging.dispatch._queue_sends", lambda ids: None)
    frequency.frequency_cap_update(workspace=acme, per_day=1, per_week=0)
    line_create(workspace=acme, server_url="http://127.0.0.1:9", device_gap_seconds=0,
                contact_gap_seconds=0)  # fmt: skip
    for round_ in range(5):
        # Two addresses of one lead: their address gates differ, only the lead's is shared.
        lead = Lead.objects.create(
            workspace=acme, phone=f"+1415555{round_:04d}", email=f"lead{round_}@example.com"
        )
        # Written directly: message_enqueue would dispatch them at once (eager tasks).
        texts = Message.objects.create(workspace=acme, lead=lead, body="Text",
                                       recipient_phone=lead.phone)  # fmt: skip
        mail = Message.objects.create(workspace=acme, lead=lead, body="Mail", message_type="email",
                                      recipient_email=lead.email)  # fmt: skip
        ids = [texts.pk, mail.pk]
        outcomes = run_in_threads(lambda i, ids=ids: dispatch_due(now=T, message_ids=[ids[i]]), 2)
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        assert sum(len(o.sending) for o in outcomes) == 1
        assert sum(len(o.waiting) for o in outcomes) == 1
        assert Message.objects.filter(lead=lead, status="sending").count() == 1


# Settings page and dashboard


def test_the_settings_page_edits_the_cap(acme, alice_client):
    assert "Frequency cap" in alice_client.get("/settings/").content.decode()
    response = alice_client.post("/settings/frequency-cap/", {"per_day": "3", "per_week": "6"})
    assert response.status_code == 302
    assert frequency.caps_for(acme.pk) == Caps(3, 6)


def test_a_bad_cap_is_a_form_error_and_nothing_is_saved(acme, alice_client):
    response = alice_client.post("/settings/frequency-cap/", {"per_day": "x", "per_week": "6"})
    assert response.status_code == 400
    assert "Enter a whole number" in response.content.decode()
    assert not FrequencyCap.objects.filter(workspace=acme).exists()


def test_the_message_page_shows_a_held_send(capped, api, alice_client):
    ids = [send(api, f"Note {n}") for n in range(3)]
    dispatch_due(now=T)
    page = alice_client.get(f"/quick-send/{ids[2]}/").content.decode()
    assert "Held: Frequency cap: this lead already got 2 messages in 24 hours" in page
    assert "Jan 7, 2027 15:00" in page
