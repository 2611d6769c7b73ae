"""The rules of line safety: risk levels, halved caps, override, release hook."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from lines import safety
from lines.budget import SendBudget
from lines.models import Line
from tests.lines.helpers import offline_line

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def record(line, kind, amount, at=NOW):
    safety.line_evidence_record(line_id=line.pk, kind=kind, at=at, amount=amount)


@pytest.mark.parametrize(
    ("sent", "failed", "risk"),
    [(100, 4, "low"), (100, 5, "medium"), (100, 15, "medium"), (100, 16, "high"), (10, 2, "low")],
)
def test_risk_follows_the_published_failure_rate_bands(acme, sent, failed, risk):
    line = offline_line(acme)
    record(line, "sent", sent)
    Line.objects.filter(pk=line.pk).update(send_consecutive_failures=0)
    stats = safety.line_stats(line=Line.objects.get(pk=line.pk), now=NOW)
    stats.failed_24h = failed
    stats.consecutive_failures = 0
    assert stats.risk == risk


def test_old_activity_leaves_the_window(acme):
    line = offline_line(acme)
    record(line, "sent", 30, at=NOW - timedelta(hours=25))
    record(line, "failed", 30, at=NOW - timedelta(hours=25))
    stats = safety.line_stats(line=Line.objects.get(pk=line.pk), now=NOW)
    assert (stats.sent_24h, stats.failed_24h) == (0, 0)
    assert stats.sent_7d == 30


def test_medium_risk_halves_the_caps_for_a_day(acme):
    line = offline_line(
        acme, daily_total_messages_limit=10, daily_new_conversations_limit=10, device_gap_seconds=0
    )
    record(line, "sent", 40)
    record(line, "failed", 3)  # 7.5 %, three in a row
    line.refresh_from_db()
    assert line.safety_action == "caps_halved"
    assert line.safety_action_until == NOW + timedelta(hours=24)
    assert line.health_status in ("unknown", "degraded")

    with transaction.atomic():
        budget = SendBudget([line.pk], NOW + timedelta(hours=1))
        taken = [budget.take(line, new_conversation=True) for _ in range(8)]
    assert taken.count(True) == 5

    with transaction.atomic():
        budget = SendBudget([line.pk], NOW + timedelta(hours=25))
        assert all(budget.take(line, new_conversation=True) for _ in range(8))


def test_high_risk_quarantines_and_an_override_releases(acme, monkeypatch):
    released = []
    monkeypatch.setattr(safety, "on_line_released", lambda line: released.append(line.pk))
    line = offline_line(acme)
    record(line, "sent", 5)
    record(line, "failed", 5)
    line.refresh_from_db()
    assert line.health_status == "quarantined" and not line.is_usable
    assert "5 of 5" in line.safety_action_reason

    safety.line_safety_override(workspace=acme, line_id=line.pk, now=NOW)
    line.refresh_from_db()
    assert line.safety_action == "" and line.is_usable
    assert released == [line.pk]
    # During the override more failures take no action.
    record(line, "failed", 6)
    assert Line.objects.get(pk=line.pk).safety_action == ""


def test_a_delivery_ends_the_run(acme):
    line = offline_line(acme)
    record(line, "failed", 2)
    record(line, "delivered", 1)
    assert Line.objects.get(pk=line.pk).send_consecutive_failures == 0


def test_unknown_evidence_is_refused(acme):
    with pytest.raises(ValueError):
        record(offline_line(acme), "bounced", 1)


def test_safety_off_takes_no_action(acme, settings):
    settings.LINE_SAFETY_ENABLED = False
    line = offline_line(acme)
    record(line, "sent", 10)
    record(line, "failed", 10)
    assert Line.objects.get(pk=line.pk).safety_action == ""


def test_override_api_is_for_owners_and_answers_the_line(acme, api):
    line = offline_line(acme)
    safety.line_quarantine(line=line, reason="iMessage is dead: test")
    response = api.post(f"/api/lines/{line.pk}/safety-override")
    assert response.status_code == 200
    assert response.json()["safety"]["action"] is None
    assert response.json()["safety"]["overrideUntil"]
    assert api.post("/api/lines/nope/safety-override").status_code == 404


def test_the_canary_address_is_validated(acme, api):
    line = offline_line(acme)
    bad = api.patch(f"/api/lines/{line.pk}", {"canaryAddress": "not a number"}, format="json")
    assert bad.status_code == 400
    ok = api.patch(f"/api/lines/{line.pk}", {"canaryAddress": "+1 415 555 0102"}, format="json")
    assert ok.status_code == 200
    assert ok.json()["safety"]["canaryAddress"] == "+14155550102"


def test_a_line_released_from_quarantine_warms_up_again(acme, settings):
    from lines import warmup

    settings.LINE_WARMUP_DAYS = 14
    settings.LINE_WARMUP_START_CAP = 10
    line = offline_line(acme)
    Line.objects.filter(pk=line.pk).update(warmup_started_at=None)
    record(line, "sent", 5)
    record(line, "failed", 5)
    line.refresh_from_db()
    assert line.health_status == "quarantined"

    safety.line_safety_override(workspace=acme, line_id=line.pk, now=NOW)
    line.refresh_from_db()
    assert line.is_usable
    assert line.warmup_started_at is not None
    assert warmup.line_warmup(line).day == 1
    assert warmup.new_conversations_cap(line) == 10
