"""Gap jitter: bounds and spread of the draw, and the dispatcher's device and
contact gaps carrying it (clock given with `now=`)."""

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from lines import services
from lines.jitter import gap_end, jittered_gap
from lines.models import Line
from messaging.dispatch import dispatch_due
from messaging.models import Message
from messaging.services import message_enqueue

LATER = datetime(2027, 1, 6, 15, 0, tzinfo=UTC)


def keys(count, seed=7):
    rng = random.Random(seed)
    return [(rng.randrange(10**9), rng.random()) for _ in range(count)]


def test_a_jittered_gap_stays_within_its_bounds_and_spreads_over_them():
    gaps = [jittered_gap(100, 30, *key).total_seconds() for key in keys(5000)]
    assert min(gaps) >= 70 and max(gaps) <= 130
    # Uniform over the range: both ends reached, the middle on average, each tenth used.
    assert min(gaps) < 71 and max(gaps) > 129
    assert statistics.mean(gaps) == pytest.approx(100, abs=1.5)
    tenths = [0] * 10
    for gap in gaps:
        tenths[min(9, int((gap - 70) / 6))] += 1
    assert all(400 <= n <= 600 for n in tenths), tenths


def test_one_gap_has_one_length_however_often_it_is_looked_at():
    first = gap_end(LATER, 45, 30, "recipient", "ws", "+14155550100")
    assert all(
        gap_end(LATER, 45, 30, "recipient", "ws", "+14155550100") == first for _ in range(20)
    )
    assert gap_end(LATER + timedelta(seconds=1), 45, 30, "recipient", "ws", "+1415") != first


def test_no_jitter_or_no_gap_is_exact():
    assert jittered_gap(45, 0, "k") == timedelta(seconds=45)
    assert jittered_gap(0, 30, "k") == timedelta(0)


pytestmark = pytest.mark.django_db


def make_line(workspace, **fields):
    return services.line_create(workspace=workspace, server_url="http://127.0.0.1:9", **fields)


def test_the_device_gap_varies_within_the_jitter_bounds(acme):
    services.line_policy_update(workspace=acme, gap_jitter_percent=30)
    waits = []
    for index in range(12):
        line = make_line(acme, device_gap_seconds=100, contact_gap_seconds=0)
        Line.objects.filter(pk=line.pk).update(last_sent_at=LATER - timedelta(seconds=index))
        message = message_enqueue(
            workspace=acme, body="Hi", recipient_phone=f"+1415555{index:04d}", line=line
        )
        result = dispatch_due(now=LATER, message_ids=[message.pk])
        waits.append(result.waiting[message.pk] - (LATER - timedelta(seconds=index)))
    seconds = [w.total_seconds() for w in waits]
    assert all(70 <= s <= 130 for s in seconds), seconds
    assert len({round(s) for s in seconds}) > 6  # not one fixed gap


def test_the_contact_gap_varies_within_the_jitter_bounds_and_then_sends(acme):
    services.line_policy_update(workspace=acme, gap_jitter_percent=30)
    make_line(acme, device_gap_seconds=0, contact_gap_seconds=100)
    ends = []
    for index in range(10):
        phone = f"+1415555{index:04d}"
        first = message_enqueue(workspace=acme, body="One", recipient_phone=phone)
        assert dispatch_due(now=LATER, message_ids=[first.pk]).sending == [first.pk]
        second = message_enqueue(workspace=acme, body="Two", recipient_phone=phone)
        waiting = dispatch_due(now=LATER, message_ids=[second.pk]).waiting[second.pk]
        assert LATER + timedelta(seconds=70) <= waiting <= LATER + timedelta(seconds=130)
        ends.append(waiting)
        # Looked at again just before its gap ends: it still waits, for the same end.
        Message.objects.filter(pk=second.pk).update(due_at=waiting - timedelta(seconds=1))
        assert dispatch_due(
            now=waiting - timedelta(seconds=1), message_ids=[second.pk]
        ).waiting == {second.pk: waiting}
        assert dispatch_due(now=waiting, message_ids=[second.pk]).sending == [second.pk]
        assert Message.objects.get(pk=second.pk).status == "sending"
    assert len(set(ends)) > 5
