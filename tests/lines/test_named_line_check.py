"""line_pick_for_check on one named line (what a send does before it checks its
recipient): the same caps, gaps and reasons as the round robin, on either clock."""

import threading
from datetime import timedelta

import pytest

from lines.models import Line, LineUsage
from lines.services import ALL_DOWN, NO_ACTIVE_LINE, QUOTA_EXHAUSTED, WAIT, line_pick_for_check
from tests.lines.helpers import NOON, offline_line
from tests.threads import held_by_another_transaction, run_in_threads

pytestmark = pytest.mark.django_db


def pick(workspace, line, now=NOON):
    return line_pick_for_check(workspace=workspace, now=now, line_id=line.pk)


def checks_taken(line, day=NOON):
    usage = LineUsage.objects.filter(line=line, date=day.date()).first()
    return usage.availability_checks_count if usage else 0


def test_each_pick_takes_one_check_and_stamps_the_line(acme):
    line = offline_line(acme, daily_availability_checks_limit=3)
    for second in range(3):
        instant = NOON + timedelta(seconds=second)
        picked = pick(acme, line, instant)
        assert picked.line == line
        assert picked.line.last_check_at == instant
        assert picked.line.relay_password == "pw"  # the whole line, usable by the client
    assert checks_taken(line) == 3
    assert pick(acme, line, NOON + timedelta(seconds=5)).reason == QUOTA_EXHAUSTED
    assert checks_taken(line) == 3


def test_the_gap_makes_the_next_pick_wait(acme):
    line = offline_line(acme, check_gap_seconds=3)
    assert pick(acme, line).line == line
    busy = pick(acme, line, NOON + timedelta(seconds=1))
    assert (busy.line, busy.reason) == (None, WAIT)
    assert busy.retry_after == pytest.approx(2.0)
    assert pick(acme, line, NOON + timedelta(seconds=3)).line == line
    assert checks_taken(line) == 2


def test_a_down_inactive_or_foreign_line_is_not_picked(acme, globex):
    line = offline_line(acme)
    assert pick(acme, line).line == line
    Line.objects.filter(pk=line.pk).update(health_status=Line.Health.DOWN)
    assert pick(acme, line, NOON + timedelta(seconds=1)).reason == ALL_DOWN
    Line.objects.filter(pk=line.pk).update(health_status=Line.Health.HEALTHY, is_active=False)
    assert pick(acme, line, NOON + timedelta(seconds=2)).reason == NO_ACTIVE_LINE
    Line.objects.filter(pk=line.pk).update(is_active=True)
    assert pick(globex, line, NOON + timedelta(seconds=3)).reason == NO_ACTIVE_LINE
    assert checks_taken(line) == 1


def test_the_database_clock_keeps_the_gap(acme):
    line = offline_line(acme, check_gap_seconds=60)
    first = line_pick_for_check(workspace=acme, line_id=line.pk)
    assert first.line == line and first.line.last_check_at is not None
    second = line_pick_for_check(workspace=acme, line_id=line.pk)
    assert (second.line, second.reason) == (None, WAIT)
    assert 58 < second.retry_after <= 60


@pytest.mark.django_db(transaction=True)
def test_a_named_line_held_by_another_worker_is_waited_for(acme, settings):
    """The round robin skips a locked line; a pick of one named line waits for the
    lock instead of answering "busy" (which sends a message back to the queue)."""
    if not settings.IS_POSTGRES:
        pytest.skip("needs Postgres (set DATABASE_URL)")
    line = offline_line(acme)
    picked = []
    picker = threading.Thread(target=lambda: picked.extend(run_in_threads(
        lambda _index: pick(acme, line), 1
    )))  # fmt: skip
    with held_by_another_transaction(
        lambda: Line.objects.select_for_update(no_key=True).get(pk=line.pk)
    ) as release:
        picker.start()
        picker.join(0.5)
        assert picker.is_alive()  # waiting for the lock, not answering "busy"
        assert line_pick_for_check(workspace=acme, now=NOON).reason == WAIT  # skips it
        release.set()
        picker.join(10)
    assert picked[0].line == line
    assert checks_taken(line) == 1


@pytest.mark.django_db(transaction=True)
def test_racing_picks_never_pass_the_cap(acme, settings):
    if not settings.IS_POSTGRES:
        pytest.skip("needs Postgres (set DATABASE_URL)")
    line = offline_line(acme, daily_availability_checks_limit=10)
    assert pick(acme, line).line == line  # today's counter exists from here on

    def race(index):
        # A line another racer holds is busy for now: try again until the cap says no.
        won = 0
        for attempt in range(500):
            picked = pick(acme, line, NOON + timedelta(seconds=1 + attempt))
            if picked.line is not None:
                won += 1
            elif picked.reason == QUOTA_EXHAUSTED:
                return won
        raise AssertionError("the cap was never reported")

    outcomes = run_in_threads(race, 6)
    assert [o for o in outcomes if isinstance(o, Exception)] == []
    assert sum(outcomes) == 9
    assert checks_taken(line) == 10
