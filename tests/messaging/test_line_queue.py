"""Rows waiting for a line queue behind each other: when every line that could take a
row is in its device gap, the row is due one gap's share after the last row queued,
so each time a line frees up one row comes due (not every waiting row at every gap
end, which made the dispatcher decide a whole backlog again twice a minute)."""

from datetime import timedelta

import pytest

from lines.models import Line
from messaging.dispatch import dispatch_due, messages_wake_for_line
from messaging.models import Message
from tests.messaging.test_dispatch import WED, enqueue, make_line, reload

pytestmark = pytest.mark.django_db

GAP = timedelta(seconds=30)


def phones(count, start=0):
    return [f"+1415555{1000 + 2 * (start + i):04d}" for i in range(count)]


def waiting(workspace):
    return list(Message.objects.filter(workspace=workspace, status="scheduled").order_by("due_at"))


def test_a_backlog_on_one_line_is_spaced_by_its_gap(acme):
    make_line(acme, device_gap_seconds=30)
    messages = [enqueue(acme, phone=p) for p in phones(5)]
    result = dispatch_due(now=WED)
    assert result.sending == [messages[0].pk]
    queued = waiting(acme)
    assert [m.due_at for m in queued] == [WED + GAP * k for k in (1, 2, 3, 4)]
    assert all(m.queued_for_line and m.scheduled_date == m.due_at for m in queued)
    assert queued[0].hold_reason == ""  # nothing the API shows changes


def test_rows_written_later_queue_behind_the_ones_waiting(acme):
    make_line(acme, device_gap_seconds=30)
    for phone in phones(3):
        enqueue(acme, phone=phone)
    dispatch_due(now=WED)
    late = enqueue(acme, phone=phones(1, start=10)[0])
    dispatch_due(now=WED + timedelta(seconds=5))
    assert reload(late).due_at == WED + GAP * 3


def test_each_gap_end_wakes_one_row_and_the_backlog_drains_in_order(acme):
    make_line(acme, device_gap_seconds=30)
    messages = [enqueue(acme, phone=p) for p in phones(4)]
    dispatch_due(now=WED)
    for k in (1, 2, 3):
        result = dispatch_due(now=WED + GAP * k)
        assert result.claimed == 1  # only the row whose turn it is
        assert result.sending == [messages[k].pk]


def test_a_queued_row_due_before_its_line_is_free_keeps_its_place(acme):
    line = make_line(acme, device_gap_seconds=30)
    for phone in phones(3):
        enqueue(acme, phone=phone)
    dispatch_due(now=WED)
    first, second = waiting(acme)
    # The line sent something else meanwhile: its gap now ends later than planned.
    Line.objects.filter(pk=line.pk).update(last_sent_at=WED + timedelta(seconds=20))
    dispatch_due(now=WED + GAP)
    first = reload(first)
    assert first.due_at == WED + timedelta(seconds=50)  # the gap's end, not the back
    assert first.queued_for_line
    assert first.due_at < reload(second).due_at + timedelta(seconds=1)


def test_two_lines_halve_the_spacing(acme):
    make_line(acme, device_gap_seconds=30)
    make_line(acme, device_gap_seconds=30)
    for phone in phones(6):
        enqueue(acme, phone=phone)
    result = dispatch_due(now=WED)
    assert len(result.sending) == 2
    assert [m.due_at for m in waiting(acme)] == [WED + GAP + GAP / 2 * k for k in range(4)]


def test_a_row_kept_on_its_conversations_line_is_not_queued(acme):
    make_line(acme, device_gap_seconds=30)
    make_line(acme, device_gap_seconds=30)
    first = enqueue(acme, phone="+14155550102", body="One")
    dispatch_due(now=WED)
    assert reload(first).line_id is not None
    busy = reload(first).line
    Line.objects.filter(pk=busy.pk).update(last_sent_at=WED)
    second = enqueue(acme, phone="+14155550102", body="Two")
    dispatch_due(now=WED + timedelta(seconds=1))
    second = reload(second)
    assert (second.status, second.queued_for_line) == ("scheduled", False)
    assert second.due_at == WED + GAP


def test_a_line_coming_back_requeues_the_backlog_for_the_lines_there_are(acme):
    make_line(acme, device_gap_seconds=30)
    messages = [enqueue(acme, phone=p) for p in phones(5)]
    dispatch_due(now=WED)
    make_line(acme, device_gap_seconds=30)  # the backlog can go twice as fast now
    later = WED + timedelta(seconds=10)
    assert messages_wake_for_line(workspace_id=acme.pk, now=later) >= 4
    assert not Message.objects.filter(workspace=acme, queued_for_line=True).exists()
    result = dispatch_due(now=later)
    assert result.sending == [messages[1].pk]  # the new line, at once; the oldest first
    due = [m.due_at for m in waiting(acme)]
    assert due == [WED + GAP, WED + GAP + GAP / 2, WED + GAP * 2]


def test_leaving_the_queue_clears_the_mark(acme):
    make_line(acme, device_gap_seconds=30)
    messages = [enqueue(acme, phone=p) for p in phones(2)]
    dispatch_due(now=WED)
    assert reload(messages[1]).queued_for_line
    dispatch_due(now=WED + GAP)
    sent = reload(messages[1])
    assert (sent.status, sent.queued_for_line) == ("sending", False)
