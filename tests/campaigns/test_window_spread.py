"""Campaign sends spread over the send window instead of bursting at its opening:
the slots, their bounds (seeded RNG), and a whole day driven with a clock."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from campaigns import pacing
from campaigns.models import Campaign
from campaigns.pacing import SPREAD_END_MARGIN, spread_times
from campaigns.services import campaign_start, campaigns_tick
from messaging.dispatch import dispatch_due
from messaging.models import Message

OPENS = datetime(2026, 3, 4, 14, 0, tzinfo=UTC)  # 09:00 in New York
CLOSES = datetime(2026, 3, 4, 22, 0, tzinfo=UTC)  # 17:00 in New York


def test_each_send_takes_its_own_slot_at_a_random_point_within_it():
    times = spread_times(OPENS, CLOSES, count=50, slots=50, rng=random.Random(1))
    assert len(times) == 50
    width = (CLOSES - SPREAD_END_MARGIN - OPENS) / 50
    for index, at in enumerate(times):
        assert OPENS + width * index <= at < OPENS + width * (index + 1)
    assert times == sorted(times)
    offsets = [(at - OPENS - width * i) / width for i, at in enumerate(times)]
    assert min(offsets) < 0.1 and max(offsets) > 0.9  # not pinned to the slots' starts


def test_few_due_on_a_big_line_take_the_first_slots_of_its_capacity():
    width = (CLOSES - SPREAD_END_MARGIN - OPENS) / 48  # about 10 minutes
    times = spread_times(OPENS, CLOSES, count=3, slots=48, rng=random.Random(2))
    assert all(OPENS <= at < OPENS + 3 * width for at in times)
    later = spread_times(OPENS, CLOSES, count=2, slots=48, first_slot=3, rng=random.Random(2))
    assert all(OPENS + 3 * width <= at < OPENS + 5 * width for at in later)


def test_no_time_falls_outside_the_window_whatever_the_draw():
    class Extremes(random.Random):
        def __init__(self, values):
            super().__init__()
            self.values = iter(values)

        def random(self):
            return next(self.values)

    times = spread_times(OPENS, CLOSES, count=3, slots=3, rng=Extremes([0.0, 0.5, 0.9999999999]))
    assert times[0] == OPENS
    assert all(OPENS <= at < CLOSES for at in times)
    # More due than slots: the window is cut finer, never stretched.
    times = spread_times(OPENS, CLOSES, count=10, slots=4, rng=random.Random(3))
    assert all(OPENS <= at < CLOSES for at in times)


pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def spreading(settings, monkeypatch):
    settings.SEND_SPREAD_OVER_WINDOW = True
    monkeypatch.setattr(pacing, "SPREAD_RNG", random.Random(4))


def test_a_days_first_messages_cover_the_window_and_none_goes_outside_it(
    acme, clock, make_line, make_list, create_campaign
):
    clock.now = OPENS - timedelta(hours=2)  # 07:00 in New York: the window is closed
    make_line(daily_new_conversations_limit=16, daily_total_messages_limit=100)
    lead_list = make_list(24)
    body = create_campaign(
        listId=lead_list.pk,
        steps=[{"message": "Hi {firstName}", "delay": 0, "delayUnit": "minutes"}],
        settings={
            "timezone": "America/New_York",
            "sendWindowStart": "09:00",
            "sendWindowEnd": "17:00",
        },
    )
    campaign_start(workspace=acme, campaign_id=body["_id"])
    campaigns_tick()
    firsts = Message.objects.filter(campaign_id=body["_id"], step_index=0)
    released = sorted(firsts.filter(held=False).values_list("due_at", flat=True))
    # The line's 16 for today, one per half hour of the window; the rest wait.
    assert len(released) == 16
    assert firsts.filter(held=True).count() == 8
    assert all(OPENS <= at < CLOSES for at in released), released
    assert released[0] < OPENS + timedelta(minutes=30)
    assert released[-1] >= CLOSES - timedelta(minutes=40)
    for earlier, later in zip(released, released[1:], strict=False):
        assert later - earlier < timedelta(hours=1)

    # Drive the day: each goes when due, all inside the window, none bunched.
    while clock.now < CLOSES + timedelta(hours=1):
        campaigns_tick()
        while dispatch_due(limit=100).claimed:
            pass
        clock.advance(minutes=5)
    sent = sorted(
        firsts.exclude(sending_started_at=None).values_list("sending_started_at", flat=True)
    )
    assert len(sent) == 16, list(firsts.values_list("status", "due_at", "held", "hold_reason"))
    assert all(OPENS <= at < CLOSES for at in sent)
    assert sent[-1] - sent[0] > timedelta(hours=7)
    assert Campaign.objects.get(pk=body["_id"]).status == "active"


def test_with_spreading_off_they_are_due_at_once(acme, clock, make_line, make_list,
                                                 create_campaign, settings):  # fmt: skip
    settings.SEND_SPREAD_OVER_WINDOW = False
    make_line()
    body = create_campaign(listId=make_list(5).pk)
    campaign_start(workspace=acme, campaign_id=body["_id"])
    campaigns_tick()
    due = Message.objects.filter(campaign_id=body["_id"], step_index=0, held=False)
    assert due.count() == 5
    assert all(m.due_at <= clock.now for m in due)


def test_the_campaign_gate_releases_no_more_than_a_warming_lines_cap(
    acme, clock, make_line, make_list, create_campaign, settings
):
    settings.SEND_SPREAD_OVER_WINDOW = False
    settings.LINE_WARMUP_START_CAP = 4
    settings.LINE_WARMUP_DAYS = 14
    make_line(daily_new_conversations_limit=50)  # warming: day 1, cap 4
    body = create_campaign(
        listId=make_list(10).pk,
        steps=[{"message": "Hi {firstName}", "delay": 0, "delayUnit": "minutes"}],
    )
    campaign_start(workspace=acme, campaign_id=body["_id"])
    campaigns_tick()
    firsts = Message.objects.filter(campaign_id=body["_id"], step_index=0)
    assert firsts.filter(held=False).count() == 4
    assert firsts.filter(held=True).count() == 6
