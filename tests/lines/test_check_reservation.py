"""line_reserve_checks: several check slots at once, for a background job's round."""

from datetime import timedelta

import pytest
from django.conf import settings

from lines import services
from lines.models import Line
from lines.services import ALL_DOWN, NO_ACTIVE_LINE, QUOTA_EXHAUSTED, WAIT, line_reserve_checks
from tests.lines.helpers import NOON, offline_line
from tests.threads import run_in_threads


def checks(line, day=NOON):
    return services.usage_for(line=line, now=day).availability_checks_count


def taken(reservation) -> dict:
    return {line.pk: count for line, count in reservation.slots}


def test_gapless_lines_give_several_slots_spread_over_the_lines(acme):
    lines = [offline_line(acme) for _ in range(3)]
    reservation = line_reserve_checks(workspace=acme, count=30, now=NOON)
    assert taken(reservation) == {line.pk: 10 for line in lines}
    assert [checks(line) for line in lines] == [10, 10, 10]
    for line in lines:
        line.refresh_from_db()
        assert line.last_check_at == NOON


def test_a_reservation_stops_at_the_cap_and_then_says_why(acme):
    small = offline_line(acme, daily_availability_checks_limit=3)
    big = offline_line(acme, daily_availability_checks_limit=12)
    first = line_reserve_checks(workspace=acme, count=40, now=NOON)
    assert taken(first) == {small.pk: 3, big.pk: 12}
    later = line_reserve_checks(workspace=acme, count=40, now=NOON + timedelta(seconds=1))
    assert (later.slots, later.reason, later.retry_after) == ([], QUOTA_EXHAUSTED, 3600)
    assert (checks(small), checks(big)) == (3, 12)


def test_a_line_with_a_gap_gives_one_slot_per_gap(acme):
    gapped = offline_line(acme, check_gap_seconds=3)
    first = line_reserve_checks(workspace=acme, count=10, now=NOON)
    assert taken(first) == {gapped.pk: 1}
    busy = line_reserve_checks(workspace=acme, count=10, now=NOON + timedelta(seconds=1))
    assert (busy.slots, busy.reason) == ([], WAIT)
    assert busy.retry_after == pytest.approx(2.0)
    again = line_reserve_checks(workspace=acme, count=10, now=NOON + timedelta(seconds=3))
    assert taken(again) == {gapped.pk: 1}
    assert checks(gapped) == 2


def test_down_inactive_and_missing_lines(acme, globex):
    assert line_reserve_checks(workspace=globex, count=5, now=NOON).reason == NO_ACTIVE_LINE
    offline_line(acme, is_active=False)
    down = offline_line(acme)
    Line.objects.filter(pk=down.pk).update(health_status=Line.Health.DOWN)
    reservation = line_reserve_checks(workspace=acme, count=5, now=NOON)
    assert (reservation.slots, reservation.reason) == ([], ALL_DOWN)
    assert checks(down) == 0


def test_a_line_taken_down_after_it_was_read_gives_nothing(acme, monkeypatch):
    line = offline_line(acme)
    other = offline_line(acme)
    original = services._usable_for_check

    def stale_read(candidate, current):
        # Another worker marks the first line down between the read and the claim.
        Line.objects.filter(pk=line.pk).update(health_status=Line.Health.DOWN)
        return original(candidate, current)

    monkeypatch.setattr(services, "_usable_for_check", stale_read)
    reservation = line_reserve_checks(workspace=acme, count=20, now=NOON)
    assert taken(reservation) == {other.pk: 10}
    assert (checks(line), checks(other)) == (0, 10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.IS_POSTGRES, reason="row-level races need real Postgres")
def test_the_cap_holds_when_workers_reserve_at_once(acme):
    lines = [offline_line(acme, daily_availability_checks_limit=25) for _ in range(3)]

    def reserve(index):
        got = 0
        while True:
            reservation = line_reserve_checks(workspace=acme, count=7, now=NOON)
            if reservation.reason == QUOTA_EXHAUSTED:
                return got
            got += sum(count for _, count in reservation.slots)

    outcomes = run_in_threads(reserve, 16)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(outcomes) == 75
    assert [checks(line) for line in lines] == [25, 25, 25]
