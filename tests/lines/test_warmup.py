"""Warm-up: the new-conversation cap of a new (or re-warmed) line climbs over a
curve of UTC days; dispatch, the API and the Lines page all follow it."""

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from lines import services, warmup
from lines.models import Line, LinePolicy, LineUsage
from messaging.dispatch import dispatch_due
from messaging.services import message_enqueue
from tests.lines.helpers import NOON
from tuco.errors import Conflict

pytestmark = pytest.mark.django_db

# Later than the real clock, so messages written now are due.
LATER = datetime(2027, 1, 6, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def warmup_on(settings):
    settings.LINE_WARMUP_START_CAP = 10
    settings.LINE_WARMUP_DAYS = 14


def make_line(workspace, **fields):
    fields.setdefault("device_gap_seconds", 0)
    fields.setdefault("contact_gap_seconds", 0)
    return services.line_create(workspace=workspace, server_url="http://127.0.0.1:9", **fields)


def started(line, at):
    Line.objects.filter(pk=line.pk).update(warmup_started_at=at)
    line.refresh_from_db()
    return line


# The curve


def test_the_curve_climbs_from_the_start_cap_to_the_line_cap_in_equal_steps():
    caps = [warmup.curve_cap(day=d, days=14, start_cap=10, line_cap=50) for d in range(1, 15)]
    assert caps[0] == 10
    assert caps[-1] == 50
    assert caps == sorted(caps)
    assert caps[2] == 10 + 40 * 2 // 13  # day 3: 16
    steps = {b - a for a, b in zip(caps, caps[1:], strict=False)}
    assert steps <= {3, 4}  # 40 over 13 steps, rounded down


def test_a_line_cap_below_the_start_cap_is_never_exceeded():
    assert [warmup.curve_cap(day=d, days=14, start_cap=10, line_cap=6) for d in (1, 7, 14)] == [
        6, 6, 6,
    ]  # fmt: skip


def test_days_are_utc_days_and_the_warmup_ends_after_the_last_one():
    policy = warmup.Policy(warmup_start_cap=10, warmup_days=3, gap_jitter_percent=0)
    late = NOON.replace(hour=23, minute=59)
    state = warmup.warmup_state(started_at=late, line_cap=40, policy=policy, now=late)
    assert (state.day, state.days, state.cap_today) == (1, 3, 10)
    # One minute later it is the next UTC day.
    state = warmup.warmup_state(
        started_at=late, line_cap=40, policy=policy, now=late + timedelta(minutes=1)
    )
    assert (state.day, state.cap_today) == (2, 25)
    state = warmup.warmup_state(
        started_at=late, line_cap=40, policy=policy, now=late + timedelta(days=2)
    )
    assert (state.day, state.cap_today) == (3, 40)
    assert (
        warmup.warmup_state(
            started_at=late, line_cap=40, policy=policy, now=late + timedelta(days=3)
        )
        is None
    )


# Starting, ending, restarting


def test_a_new_line_warms_up_and_an_old_one_does_not(acme):
    line = make_line(acme)
    assert line.warmup_started_at is not None
    assert warmup.line_warmup(line).day == 1
    assert warmup.new_conversations_cap(line) == 10


def test_with_warmup_off_a_new_line_uses_its_own_cap(acme, settings):
    settings.LINE_WARMUP_DAYS = 0
    line = make_line(acme)
    assert line.warmup_started_at is None
    assert warmup.new_conversations_cap(line) == 50
    assert warmup.start_warmup(line) is False
    assert Line.objects.get(pk=line.pk).warmup_started_at is None


def test_start_warmup_starts_over_from_day_one(acme):
    line = started(make_line(acme), NOON - timedelta(days=5))
    assert warmup.line_warmup(line, now=NOON).day == 6
    assert warmup.start_warmup(line, now=NOON) is True
    line.refresh_from_db()
    assert line.warmup_started_at == NOON
    assert warmup.line_warmup(line, now=NOON).cap_today == 10


def test_the_workspace_policy_overrides_the_defaults(acme):
    services.line_policy_update(workspace=acme, warmup_start_cap=5, warmup_days=3)
    line = make_line(acme, daily_new_conversations_limit=45)
    now = line.warmup_started_at
    assert [warmup.new_conversations_cap(line, now=now + timedelta(days=d)) for d in range(4)] == [
        5,
        25,
        45,
        45,
    ]


# Dispatch and the campaign gate use the warm-up cap


def test_dispatch_opens_no_more_new_conversations_than_todays_warmup_cap(acme):
    line = started(make_line(acme), LATER - timedelta(days=2))  # day 3: cap 16
    for i in range(20):
        message_enqueue(workspace=acme, body="Hi", recipient_phone=f"+1415555{i:04d}")
    result = dispatch_due(now=LATER)
    assert len(result.sending) == 16
    # The other four wait for tomorrow (UTC), when the cap is 19.
    assert set(result.waiting.values()) == {LATER.replace(hour=0) + timedelta(days=1)}
    usage = LineUsage.objects.get(line=line)
    assert usage.new_conversations_count == 16


def test_after_the_warmup_is_ended_the_line_cap_applies_at_once(acme):
    line = started(make_line(acme), LATER)
    services.line_warmup_end(workspace=acme, line_id=line.pk)
    for i in range(20):
        message_enqueue(workspace=acme, body="Hi", recipient_phone=f"+1415555{i:04d}")
    assert len(dispatch_due(now=LATER).sending) == 20


# The API


@pytest.fixture
def api(acme):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {acme.raw_key}")
    return client


def test_the_line_object_shows_the_warmup(api):
    response = api.post(
        "/api/lines", {"serverUrl": "http://127.0.0.1:9", "password": "pw"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["warmup"]["active"] is True
    assert (body["warmup"]["day"], body["warmup"]["days"]) == (1, 14)
    assert body["warmup"]["newConversationsCapToday"] == 10
    assert body["warmup"]["startedAt"].endswith("Z")
    assert body["dailyNewConversationsLimit"] == 50  # the line's own cap is unchanged


def test_the_api_ends_and_restarts_a_warmup(api, acme):
    line = started(make_line(acme), NOON - timedelta(days=3))
    ended = api.delete(f"/api/lines/{line.pk}/warmup")
    assert ended.status_code == 200
    assert ended.json()["warmup"] == {
        "active": False, "day": None, "days": None, "newConversationsCapToday": None,
        "startedAt": None,
    }  # fmt: skip
    assert api.get(f"/api/lines/{line.pk}").json()["warmup"]["active"] is False
    restarted = api.post(f"/api/lines/{line.pk}/warmup")
    assert restarted.status_code == 200
    assert restarted.json()["warmup"]["day"] == 1


def test_restarting_with_warmup_off_is_refused(api, acme):
    line = make_line(acme)
    services.line_policy_update(workspace=acme, warmup_days=0)
    response = api.post(f"/api/lines/{line.pk}/warmup")
    assert response.status_code == 409
    assert response.json()["code"] == "WARMUP_OFF"
    with pytest.raises(Conflict):
        services.line_warmup_restart(workspace=acme, line_id=line.pk)


def test_another_workspaces_line_is_not_found(api, globex):
    foreign = make_line(globex)
    assert api.post(f"/api/lines/{foreign.pk}/warmup").status_code == 404
    assert api.delete(f"/api/lines/{foreign.pk}/warmup").status_code == 404
    assert Line.objects.get(pk=foreign.pk).warmup_started_at is not None


# The Lines page and the Settings page


def test_the_lines_page_shows_the_day_and_todays_cap(acme, alice_client):
    started(make_line(acme, first_name="Ava"), NOON.replace(year=2020))  # long done
    warming = make_line(acme, first_name="Bea")
    Line.objects.filter(pk=warming.pk).update(
        warmup_started_at=warming.warmup_started_at - timedelta(days=2)
    )
    page = alice_client.get("/lines/").content.decode()
    assert page.count("Warming up") == 1
    assert "day 3 of 14, cap today 16 new conversations" in page
    assert "16 / 16" not in page and "0 / 16" in page  # the bar counts against today's cap


def test_an_owner_ends_and_restarts_the_warmup_from_the_lines_page(acme, alice_client):
    line = make_line(acme)
    response = alice_client.post(f"/lines/{line.pk}/warmup/", {"action": "end"})
    assert response.status_code == 302
    assert Line.objects.get(pk=line.pk).warmup_started_at is None
    alice_client.post(f"/lines/{line.pk}/warmup/", {"action": "restart"})
    assert Line.objects.get(pk=line.pk).warmup_started_at is not None


def test_a_member_cannot_end_a_warmup(acme, bob_client):
    line = make_line(acme)
    response = bob_client.post(f"/lines/{line.pk}/warmup/", {"action": "end"})
    assert response.status_code == 403
    assert Line.objects.get(pk=line.pk).warmup_started_at is not None


def test_the_settings_page_edits_the_policy(acme, alice_client):
    page = alice_client.get("/settings/").content.decode()
    assert "Line pacing" in page
    response = alice_client.post(
        "/settings/line-pacing/",
        {"warmup_start_cap": "5", "warmup_days": "7", "gap_jitter_percent": "20"},
    )
    assert response.status_code == 302
    assert warmup.policy_for(acme.pk) == warmup.Policy(5, 7, 20, spread_over_window=False)


def test_a_bad_policy_value_is_a_form_error_and_nothing_is_saved(acme, alice_client):
    response = alice_client.post(
        "/settings/line-pacing/",
        {"warmup_start_cap": "5", "warmup_days": "-1", "gap_jitter_percent": "20"},
    )
    assert response.status_code == 400
    assert "greater than or equal to 0" in response.content.decode()
    assert not LinePolicy.objects.filter(workspace=acme).exists()
