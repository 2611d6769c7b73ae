import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models.functions import Now
from django.utils import timezone

from lines import services
from lines.models import Line, LineUsage
from lines.services import (
    ALL_DOWN,
    NO_ACTIVE_LINE,
    QUOTA_EXHAUSTED,
    WAIT,
    line_claim_check_slot,
    line_pick_for_check,
    usage_release,
    usage_try_consume,
)
from lines.signals import line_capacity_changed
from lines.tasks import lines_health_check_all
from tests.lines.helpers import NOON, offline_line

needs_postgres = pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="row-level races need real Postgres, not SQLite"
)


def checks(line, day=NOON):
    return services.usage_for(line=line, now=day).availability_checks_count


def test_it_consumes_up_to_the_cap_and_no_further(acme):
    line = offline_line(acme, daily_availability_checks_limit=3)
    results = [usage_try_consume(line=line, kind="availability_checks", now=NOON) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert checks(line) == 3


def test_usage_resets_at_utc_midnight(acme):
    line = offline_line(acme, daily_availability_checks_limit=1)
    late = datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC)
    assert usage_try_consume(line=line, kind="availability_checks", now=late)
    assert not usage_try_consume(line=line, kind="availability_checks", now=late)
    assert usage_try_consume(line=line, kind="availability_checks", now=late + timedelta(seconds=1))
    assert LineUsage.objects.filter(line=line).count() == 2


def test_kinds_have_separate_counters_and_limits(acme):
    line = offline_line(acme, daily_new_conversations_limit=1, daily_total_messages_limit=2)
    assert usage_try_consume(line=line, kind="new_conversations", now=NOON)
    assert not usage_try_consume(line=line, kind="new_conversations", now=NOON)
    assert usage_try_consume(line=line, kind="total_messages", now=NOON)
    assert usage_try_consume(line=line, kind="total_messages", now=NOON)
    assert not usage_try_consume(line=line, kind="total_messages", now=NOON)
    assert usage_try_consume(line=line, kind="availability_checks", now=NOON)
    with pytest.raises(ValueError, match="unknown usage kind"):
        usage_try_consume(line=line, kind="bogus", now=NOON)


def test_a_lowered_limit_applies_at_once(acme):
    line = offline_line(acme, daily_availability_checks_limit=5)
    for _ in range(3):
        usage_try_consume(line=line, kind="availability_checks", now=NOON)
    services.line_update(workspace=acme, line_id=line.pk, daily_availability_checks_limit=3)
    assert not usage_try_consume(line=line, kind="availability_checks", now=NOON)


def test_release_gives_a_slot_back_but_never_goes_negative(acme):
    line = offline_line(acme, daily_availability_checks_limit=1)
    assert usage_try_consume(line=line, kind="availability_checks", now=NOON)
    usage_release(line=line, kind="availability_checks", now=NOON)
    usage_release(line=line, kind="availability_checks", now=NOON)
    assert checks(line) == 0
    assert usage_try_consume(line=line, kind="availability_checks", now=NOON)


def test_the_check_gap_holds(acme):
    line = offline_line(acme, check_gap_seconds=3)
    assert line_claim_check_slot(line=line, now=NOON)
    assert not line_claim_check_slot(line=line, now=NOON + timedelta(seconds=2.9))
    assert line_claim_check_slot(line=line, now=NOON + timedelta(seconds=3))


def test_the_device_gap_holds_for_sends(acme):
    from django.db import transaction

    from lines.budget import SendBudget

    line = offline_line(acme, device_gap_seconds=30, daily_new_conversations_limit=2)

    def take(at, new_conversation=False):
        with transaction.atomic():
            budget = SendBudget([line.pk], at)
            taken = budget.take(line, new_conversation=new_conversation)
            budget.save()
            return taken

    assert take(NOON, new_conversation=True) is True
    assert take(NOON + timedelta(seconds=29)) == NOON + timedelta(seconds=30)
    assert take(NOON + timedelta(seconds=30), new_conversation=True) is True
    assert take(NOON + timedelta(seconds=60), new_conversation=True) is False  # cap of 2
    usage = LineUsage.objects.get(line=line)
    assert (usage.total_messages_count, usage.new_conversations_count) == (2, 2)
    line.refresh_from_db()
    assert line.last_sent_at == NOON + timedelta(seconds=30)


def _race(workers, action):
    barrier = threading.Barrier(workers)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.extend(action())
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_daily_cap_is_exact_under_concurrency(acme):
    line = offline_line(acme, daily_availability_checks_limit=70)

    def consume():
        kind = "availability_checks"
        return [usage_try_consume(line=line, kind=kind, now=NOON) for _ in range(10)]

    results = _race(16, consume)
    assert results.count(True) == 70
    assert checks(line) == 70


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_check_gap_is_exact_under_concurrency(acme):
    line = offline_line(acme, check_gap_seconds=3)
    # 16 workers claim at every half second over 10 seconds: one claim per 3 s wins.
    instants = [NOON + timedelta(seconds=s / 2) for s in range(21)]

    def claim():
        won = []
        for instant in instants:
            if line_claim_check_slot(line=Line.objects.get(pk=line.pk), now=instant):
                won.append(instant)
        return won

    won = sorted(_race(16, claim))
    assert won == [NOON + timedelta(seconds=s) for s in (0, 3, 6, 9)]


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_round_robin_holds_the_gap_under_concurrency(acme):
    lines = [offline_line(acme, check_gap_seconds=3) for _ in range(2)]
    instants = [NOON + timedelta(seconds=s / 2) for s in range(13)]

    def pick():
        won = []
        for instant in instants:
            result = line_pick_for_check(workspace=acme, now=instant)
            if result.line is not None:
                won.append((result.line.pk, instant))
        return won

    won = _race(16, pick)
    for line in lines:
        times = sorted(instant for pk, instant in won if pk == line.pk)
        # Workers move through the instants at their own pace, so which instants win
        # varies; two claims on one line are never closer than the gap.
        assert len(times) >= 2
        assert all(b - a >= timedelta(seconds=3) for a, b in zip(times, times[1:], strict=False))
        assert checks(line) == len(times)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_round_robin_picks_respect_caps_under_concurrency(acme):
    lines = [offline_line(acme, daily_availability_checks_limit=10) for _ in range(3)]

    def pick():
        picked = []
        while len(picked) < 5:
            result = line_pick_for_check(workspace=acme, now=NOON)
            if result.reason != WAIT:  # rows held by other workers for a moment
                picked.append(result.line.pk if result.line else result.reason)
        return picked

    results = _race(8, pick)
    for line in lines:
        assert results.count(line.pk) == 10
        assert checks(line) == 10
    assert results.count(QUOTA_EXHAUSTED) == 10


def test_round_robin_uses_the_least_recently_used_line(acme):
    first = offline_line(acme)
    second = offline_line(acme)
    picks = [line_pick_for_check(workspace=acme, now=NOON + timedelta(seconds=i)) for i in range(4)]
    assert [p.line.pk for p in picks] == [first.pk, second.pk, first.pk, second.pk]


def test_pick_skips_down_inactive_and_exhausted_lines(acme):
    down = offline_line(acme)
    Line.objects.filter(pk=down.pk).update(health_status=Line.Health.DOWN)
    offline_line(acme, is_active=False)
    exhausted = offline_line(acme, daily_availability_checks_limit=0)
    usable = offline_line(acme)
    for i in range(3):
        assert line_pick_for_check(workspace=acme, now=NOON + timedelta(seconds=i)).line == usable
    assert checks(exhausted) == 0


def test_pick_explains_why_there_is_no_line(acme, globex):
    assert line_pick_for_check(workspace=globex, now=NOON).reason == NO_ACTIVE_LINE
    offline_line(globex, is_active=False)
    assert line_pick_for_check(workspace=globex, now=NOON).reason == NO_ACTIVE_LINE

    line = offline_line(acme, daily_availability_checks_limit=1, check_gap_seconds=3)
    assert line_pick_for_check(workspace=acme, now=NOON).line == line
    busy = line_pick_for_check(workspace=acme, now=NOON + timedelta(seconds=1))
    assert (busy.reason, busy.retry_after) == (QUOTA_EXHAUSTED, 3600)

    services.line_update(workspace=acme, line_id=line.pk, daily_availability_checks_limit=5)
    busy = line_pick_for_check(workspace=acme, now=NOON + timedelta(seconds=1))
    assert busy.reason == WAIT
    assert busy.retry_after == pytest.approx(2.0)

    Line.objects.filter(pk=line.pk).update(health_status=Line.Health.DOWN)
    assert line_pick_for_check(workspace=acme, now=NOON + timedelta(seconds=9)).reason == ALL_DOWN


def test_a_pick_that_loses_the_quota_race_moves_on(acme, monkeypatch):
    line = offline_line(acme, daily_availability_checks_limit=1, check_gap_seconds=3)
    other = offline_line(acme, check_gap_seconds=3)
    original = services.usage_try_consume

    def racing(*, line, kind, now=None, amount=1):
        if line.pk != other.pk:  # another worker takes the last check first
            original(line=line, kind=kind, now=now, amount=amount)
        return original(line=line, kind=kind, now=now, amount=amount)

    monkeypatch.setattr(services, "usage_try_consume", racing)
    pick = line_pick_for_check(workspace=acme, now=NOON)
    assert pick.line == other
    line.refresh_from_db()
    assert line.last_check_at is None


def test_health_check_marks_healthy_and_down(acme, relay, make_line):
    line = make_line(acme)
    services.line_health_check(line=line, now=NOON)
    line.refresh_from_db()
    assert line.health_status == Line.Health.HEALTHY
    assert line.health_checked_at == NOON

    relay.configure(helper_connected=False)
    services.line_health_check(line=line, now=NOON + timedelta(minutes=1))
    line.refresh_from_db()
    assert (line.health_status, line.health_consecutive_failures) == ("healthy", 1)
    assert "helper" in line.health_detail.lower()
    services.line_health_check(line=line, now=NOON + timedelta(minutes=2))
    line.refresh_from_db()
    assert (line.health_status, line.health_consecutive_failures) == ("down", 2)

    relay.configure(helper_connected=True)
    services.line_health_check(line=line, now=NOON + timedelta(minutes=3))
    line.refresh_from_db()
    assert (line.health_status, line.health_consecutive_failures) == ("healthy", 0)


def test_health_check_reports_a_wrong_password_and_an_unreachable_relay(acme, make_line):
    wrong = make_line(acme, relay_password="wrong")
    unreachable = offline_line(acme)
    for _ in range(2):
        services.line_health_check(line=wrong)
        services.line_health_check(line=unreachable)
    wrong.refresh_from_db()
    unreachable.refresh_from_db()
    assert wrong.health_status == unreachable.health_status == "down"
    assert "password" in wrong.health_detail
    assert "reach" in unreachable.health_detail


def test_the_periodic_task_checks_every_active_line(acme, globex, relay, make_line):
    lines = [make_line(acme), make_line(globex)]
    inactive = make_line(acme, is_active=False)
    assert lines_health_check_all() == 2
    for line in lines:
        line.refresh_from_db()
        assert line.health_status == "healthy"
    inactive.refresh_from_db()
    assert inactive.health_status == "unknown"
    assert relay.stats["by_endpoint"]["ping"] == 2


def test_the_health_task_is_registered_as_periodic():
    from django.apps import apps

    tasks = [task for _, task, _ in apps.get_app_config("lines").periodic_tasks]
    assert "lines.tasks.lines_health_check_all" in tasks


# Gaps follow the database's clock


@pytest.fixture
def skewed_clock(monkeypatch):
    """Make this process's clock run `offset` ahead of (or behind) the database's."""
    real_now = timezone.now

    def skew(offset: timedelta):
        monkeypatch.setattr(timezone, "now", lambda: real_now() + offset)

    return skew


def test_a_fast_worker_clock_cannot_shorten_the_gap(acme, skewed_clock):
    line = offline_line(acme, check_gap_seconds=3)
    assert line_claim_check_slot(line=line)
    skewed_clock(timedelta(hours=1))
    assert not line_claim_check_slot(line=line)
    pick = line_pick_for_check(workspace=acme)
    assert pick.reason == WAIT
    assert 0 < pick.retry_after <= 3


def test_a_slow_worker_clock_cannot_stretch_the_gap(acme, skewed_clock):
    line = offline_line(acme, check_gap_seconds=3)
    Line.objects.filter(pk=line.pk).update(last_check_at=Now() - timedelta(seconds=5))
    skewed_clock(-timedelta(hours=1))
    pick = line_pick_for_check(workspace=acme)
    assert pick.line == line
    # The stamp is the database's time, not the slow worker's.
    assert pick.line.last_check_at > timezone.now() + timedelta(minutes=59)
    assert not line_claim_check_slot(line=Line.objects.get(pk=line.pk))


# Health check on create and on a new relay address


def test_a_new_line_is_health_checked_once_committed(
    acme, relay, make_line, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        line = make_line(acme)
    line.refresh_from_db()
    assert line.health_status == Line.Health.HEALTHY
    assert line.health_checked_at is not None
    assert relay.stats["by_endpoint"]["ping"] == 1


def test_a_changed_server_url_or_password_is_health_checked(
    acme, relay, make_line, django_capture_on_commit_callbacks
):
    line = make_line(acme)
    with django_capture_on_commit_callbacks(execute=True):
        services.line_update(workspace=acme, line_id=line.pk, first_name="Ada")
    assert relay.stats["by_endpoint"].get("ping", 0) == 0
    with django_capture_on_commit_callbacks(execute=True):
        services.line_update(workspace=acme, line_id=line.pk, relay_password="wrong")
    line.refresh_from_db()
    assert (line.health_consecutive_failures, "password" in line.health_detail) == (1, True)
    with django_capture_on_commit_callbacks(execute=True):
        services.line_update(workspace=acme, line_id=line.pk, server_url="http://127.0.0.1:9")
    line.refresh_from_db()
    assert line.health_status == Line.Health.DOWN


# Capacity signals (the availability engine re-queues waiting jobs on them)


@pytest.fixture
def capacity_events():
    seen = []

    def receiver(sender, line_id, workspace_id, reason, **kwargs):
        seen.append((line_id, reason))

    line_capacity_changed.connect(receiver)
    yield seen
    line_capacity_changed.disconnect(receiver)


def test_capacity_changes_are_announced_on_commit(
    acme, relay, make_line, capacity_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        line = make_line(acme, is_active=False, daily_availability_checks_limit=5)
    assert capacity_events == []
    update = services.line_update
    with django_capture_on_commit_callbacks(execute=True):
        update(workspace=acme, line_id=line.pk, is_active=True)
        update(workspace=acme, line_id=line.pk, daily_availability_checks_limit=4)
        update(workspace=acme, line_id=line.pk, daily_availability_checks_limit=9)
    assert capacity_events == [(line.pk, "activated"), (line.pk, "limit_raised")]
    capacity_events.clear()
    Line.objects.filter(pk=line.pk).update(health_status=Line.Health.DOWN)
    with django_capture_on_commit_callbacks(execute=True):
        services.line_health_check(line=line)
        services.line_health_check(line=line)  # already healthy: no second event
    assert capacity_events == [(line.pk, "healthy")]
    with django_capture_on_commit_callbacks(execute=True):
        other = make_line(acme)
    assert capacity_events[-1] == (other.pk, "created")
