"""The dispatcher's pre-send checks, with a controllable clock (`now=`).

Nothing is sent here: on-commit work (the send tasks) is not run, so each test
looks at the decision the dispatcher wrote on the row.
"""

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from leads.services import lead_get_or_create
from lines.models import LineUsage
from lines.services import line_create
from messaging.dispatch import dispatch_due
from messaging.models import Conversation, DoNotContact, Message
from messaging.services import message_enqueue
from tests.messaging.conftest import at
from tests.threads import held_by_another_transaction, run_in_threads

pytestmark = pytest.mark.django_db

# A Wednesday, 15:00 UTC (10:00 in New York). Later than the real clock, so rows
# created now are due.
WED = at(2027, 1, 6, 15, 0)


def make_line(workspace, **fields):
    fields.setdefault("device_gap_seconds", 0)
    fields.setdefault("contact_gap_seconds", 0)
    return line_create(workspace=workspace, server_url="http://127.0.0.1:9", **fields)


def enqueue(workspace, phone="+14155550102", body="Hi", **kwargs):
    return message_enqueue(workspace=workspace, body=body, recipient_phone=phone, **kwargs)


def reload(message):
    message.refresh_from_db()
    return message


def test_a_due_message_in_its_window_goes_to_sending(acme):
    line = make_line(acme)
    message = enqueue(acme, timezone_name="America/New_York",
                      send_window_start="09:00", send_window_end="17:00")  # fmt: skip
    result = dispatch_due(now=WED)
    assert result.sending == [message.pk]
    message = reload(message)
    assert message.status == "sending"
    assert message.line_id == line.pk
    assert message.sending_started_at == WED
    usage = LineUsage.objects.get(line=line)
    assert (usage.total_messages_count, usage.new_conversations_count) == (1, 1)


def test_outside_the_window_it_is_scheduled_for_the_next_opening(acme):
    make_line(acme)
    message = enqueue(acme, timezone_name="America/New_York",
                      send_window_start="09:00", send_window_end="17:00")  # fmt: skip
    evening = at(2027, 1, 6, 23, 30)  # 18:30 in New York
    dispatch_due(now=evening)
    message = reload(message)
    assert message.status == "scheduled"
    assert message.scheduled_date == message.due_at == at(2027, 1, 7, 14, 0)
    assert not LineUsage.objects.exclude(total_messages_count=0, new_conversations_count=0).exists()
    # Not due before then; due (and sent) at the opening.
    assert dispatch_due(now=at(2027, 1, 7, 13, 59)).claimed == 0
    assert dispatch_due(now=at(2027, 1, 7, 14, 0)).sending == [message.pk]


def test_the_workspace_time_zone_is_the_default(acme):
    acme.timezone = "Asia/Tokyo"
    acme.save()
    make_line(acme)
    message = enqueue(acme, send_window_start="09:00", send_window_end="17:00")
    dispatch_due(now=WED)  # 00:00 in Tokyo
    assert reload(message).due_at == at(2027, 1, 7, 0, 0)


def test_a_day_not_allowed_waits_for_an_allowed_one(acme):
    make_line(acme)
    message = enqueue(acme, timezone_name="America/New_York", allowed_days=[6])
    dispatch_due(now=WED)
    assert reload(message).due_at == at(2027, 1, 9, 5, 0)  # Saturday 00:00 EST


def test_the_daily_total_cap_waits_for_the_next_utc_day(acme):
    make_line(acme, daily_total_messages_limit=1)
    first = enqueue(acme, phone="+14155550102")
    second = enqueue(acme, phone="+14155550104")
    dispatch_due(now=WED)
    assert reload(first).status == "sending"
    second = reload(second)
    assert second.status == "scheduled"
    assert second.due_at == at(2027, 1, 7, 0, 0)


def test_the_new_conversation_cap_spares_existing_conversations(acme):
    line = make_line(acme, daily_new_conversations_limit=1)
    Conversation.objects.create(
        workspace=acme, address="+14155550106", line=line, chat_guid="iMessage;-;+14155550106"
    )
    first = enqueue(acme, phone="+14155550102")
    second = enqueue(acme, phone="+14155550104")
    known = enqueue(acme, phone="+14155550106")
    dispatch_due(now=WED)
    assert reload(first).status == "sending"
    assert reload(second).status == "scheduled"
    assert reload(known).status == "sending"
    usage = LineUsage.objects.get(line=line)
    assert (usage.total_messages_count, usage.new_conversations_count) == (2, 1)


def test_the_device_gap_reschedules_to_the_end_of_the_gap(acme):
    make_line(acme, device_gap_seconds=30)
    first = enqueue(acme, phone="+14155550102")
    second = enqueue(acme, phone="+14155550104")
    dispatch_due(now=WED)
    assert reload(first).status == "sending"
    second = reload(second)
    assert (second.status, second.due_at) == ("scheduled", WED + timedelta(seconds=30))
    # The refused send gave its counters back.
    assert LineUsage.objects.get().total_messages_count == 1


def test_round_robin_spreads_over_lines(acme):
    lines = [make_line(acme, device_gap_seconds=30) for _ in range(3)]
    messages = [enqueue(acme, phone=f"+1415555010{i}") for i in (2, 4, 6)]
    result = dispatch_due(now=WED)
    assert len(result.sending) == 3
    assert {reload(m).line_id for m in messages} == {line.pk for line in lines}


def test_the_contact_gap_spaces_sends_to_one_recipient(acme):
    make_line(acme, contact_gap_seconds=45)
    first = enqueue(acme, body="One")
    second = enqueue(acme, body="Two")
    dispatch_due(now=WED)
    assert reload(first).status == "sending"
    second = reload(second)
    assert (second.status, second.due_at) == ("scheduled", WED + timedelta(seconds=45))
    assert dispatch_due(now=WED + timedelta(seconds=45)).sending == [second.pk]


def test_the_same_text_twice_within_a_minute_is_cancelled(acme):
    make_line(acme)
    first = enqueue(acme, body="Same")
    dispatch_due(now=WED)
    second = enqueue(acme, body="Same")
    dispatch_due(now=WED + timedelta(seconds=30))
    second = reload(second)
    assert second.status == "cancelled"
    assert "Duplicate" in second.cancel_reason
    assert reload(first).status == "sending"
    third = enqueue(acme, body="Same")
    dispatch_due(now=WED + timedelta(seconds=61))
    assert reload(third).status == "sending"


def test_attachment_only_messages_with_different_files_are_not_duplicates(acme):
    make_line(acme)
    files = ["https://files.example.com/menu.pdf", "https://files.example.com/map.png"]
    first, second = (enqueue(acme, body="", attachment_urls=[url]) for url in files)
    again = enqueue(acme, body="", attachment_urls=[files[0]])
    result = dispatch_due(now=WED)
    assert sorted(result.sending) == sorted([first.pk, second.pk])
    assert reload(again).status == "cancelled"


def test_emails_with_different_subjects_are_not_duplicates(acme):
    first = message_enqueue(workspace=acme, message_type="email", body="Hi",
                            recipient_email="d@example.com", subject="Monday")  # fmt: skip
    second = message_enqueue(workspace=acme, message_type="email", body="Hi",
                             recipient_email="d@example.com", subject="Tuesday")  # fmt: skip
    assert sorted(dispatch_due(now=WED).sending) == sorted([first.pk, second.pk])


def test_a_pinned_line_is_honoured(acme):
    make_line(acme)
    pinned = make_line(acme)
    pinned.last_sent_at = WED - timedelta(seconds=1)
    pinned.save()
    message = enqueue(acme, line=pinned)
    dispatch_due(now=WED)
    assert reload(message).line_id == pinned.pk


def test_a_lead_keeps_the_line_that_talked_to_it(acme):
    make_line(acme)
    kept = make_line(acme, device_gap_seconds=30)
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    Conversation.objects.create(workspace=acme, address="+14155550102", lead=lead, line=kept)
    kept.last_sent_at = WED - timedelta(seconds=5)
    kept.save()
    message = enqueue(acme, lead=lead)
    dispatch_due(now=WED)
    message = reload(message)
    # The kept line is inside its gap: the message waits for it instead of switching.
    assert (message.status, message.due_at) == ("scheduled", WED + timedelta(seconds=25))
    dispatch_due(now=WED + timedelta(seconds=25))
    assert reload(message).line_id == kept.pk


def test_opted_out_and_do_not_contact_are_cancelled(acme):
    make_line(acme)
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    lead.opted_out = True
    lead.save()
    opted_out = enqueue(acme, lead=lead)
    DoNotContact.objects.create(workspace=acme, value="+14155550104", kind="phone")
    blocked = enqueue(acme, phone="+14155550104")
    dispatch_due(now=WED)
    assert reload(opted_out).cancel_reason == "Recipient opted out"
    assert "do-not-contact" in reload(blocked).cancel_reason
    assert not LineUsage.objects.exclude(total_messages_count=0, new_conversations_count=0).exists()


def test_a_batch_of_two_workspaces_keeps_lists_duplicates_and_lines_apart(acme, globex):
    acme_line, globex_line = make_line(acme), make_line(globex)
    DoNotContact.objects.create(workspace=acme, value="+14155550104", kind="phone")
    blocked = enqueue(acme, phone="+14155550104")
    allowed = enqueue(globex, phone="+14155550104")
    # The same text to the same number from two workspaces is not a duplicate.
    ours, theirs = enqueue(acme, body="Same"), enqueue(globex, body="Same")
    result = dispatch_due(now=WED)
    assert sorted(result.sending) == sorted([allowed.pk, ours.pk, theirs.pk])
    assert "do-not-contact" in reload(blocked).cancel_reason
    assert reload(ours).line_id == acme_line.pk
    assert reload(allowed).line_id == reload(theirs).line_id == globex_line.pk


def test_a_stop_on_reply_message_whose_lead_replied_since_is_cancelled(acme):
    """A reply whose cancel missed the row (it was being rescheduled) still stops it."""
    make_line(acme)
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    stop = enqueue(acme, lead=lead, stop_on_reply=True, now=WED - timedelta(hours=1))
    keep = enqueue(acme, lead=lead, body="Not a sequence", now=WED - timedelta(hours=1))
    lead.replied_at = WED - timedelta(minutes=5)
    lead.save()
    dispatch_due(now=WED)
    assert (reload(stop).status, reload(stop).cancel_reason) == ("cancelled", "The lead replied")
    assert reload(keep).status == "sending"


def test_a_reply_before_the_message_was_written_does_not_stop_it(acme):
    make_line(acme)
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    lead.replied_at = WED - timedelta(days=1)
    lead.save()
    message = enqueue(acme, lead=lead, stop_on_reply=True, now=WED - timedelta(hours=1))
    dispatch_due(now=WED)
    assert reload(message).status == "sending"


@pytest.mark.django_db(transaction=True)
def test_a_cancel_waits_for_the_dispatcher_instead_of_skipping_its_rows(acme, monkeypatch):
    if not settings.IS_POSTGRES:
        pytest.skip("row locks need Postgres; SQLite serializes writers anyway")
    from messaging import dispatch
    from messaging.services import message_cancel_waiting

    make_line(acme)
    lead, _ = lead_get_or_create(workspace=acme, data={"phone": "+14155550102"})
    # Outside its window at WED (10:00 in New York): the dispatcher only reschedules it.
    message = enqueue(acme, lead=lead, timezone_name="America/New_York",
                      send_window_start="12:00", send_window_end="17:00")  # fmt: skip
    holding, release = threading.Event(), threading.Event()
    prepare = dispatch._Batch.prepare

    def slow_prepare(self, rows):
        prepare(self, rows)
        holding.set()
        release.wait(10)

    monkeypatch.setattr(dispatch._Batch, "prepare", slow_prepare)
    cancelled = []

    def run(work):
        try:
            work()
        finally:
            connection.close()

    dispatcher = threading.Thread(target=run, args=(lambda: dispatch_due(now=WED),))
    canceller = threading.Thread(target=run, args=(lambda: cancelled.extend(
        message_cancel_waiting(workspace=acme, lead=lead, reason="Cancelled through the API")
    ),))  # fmt: skip
    dispatcher.start()
    assert holding.wait(10)
    canceller.start()
    canceller.join(0.5)
    assert canceller.is_alive()  # waiting for the row lock, not skipping the row
    release.set()
    dispatcher.join()
    canceller.join()
    assert cancelled == [message.pk]
    assert reload(message).status == "cancelled"


def test_no_active_line_waits_instead_of_failing(acme):
    message = enqueue(acme)
    dispatch_due(now=WED)
    message = reload(message)
    assert (message.status, message.due_at) == ("scheduled", WED + timedelta(minutes=1))


def test_a_scheduled_date_is_respected(acme):
    make_line(acme)
    message = enqueue(acme, scheduled_date=at(2099, 1, 1))
    assert message.status == "scheduled"
    assert dispatch_due(now=WED).claimed == 0


@pytest.mark.django_db(transaction=True)
def test_two_racing_dispatchers_never_claim_the_same_row(acme, monkeypatch):
    if not settings.IS_POSTGRES:
        pytest.skip("SKIP LOCKED needs Postgres; SQLite serializes writers anyway")
    queued = []
    monkeypatch.setattr("messaging.dispatch._queue_sends", queued.extend)
    lines = [make_line(acme) for _ in range(4)]
    # Written in bulk, as campaigns do, so no on-commit dispatch runs before the race.
    rows = Message.objects.bulk_create(
        [
            Message(workspace=acme, recipient_phone=f"+1415555{i:04d}", body=f"m{i}")
            for i in range(200)
        ]
    )
    ids = {row.pk for row in rows}
    claimed: list[list[str]] = []
    errors = []
    barrier = threading.Barrier(2)

    def worker():
        mine = []
        try:
            barrier.wait()
            while True:
                result = dispatch_due(now=WED, limit=20)
                if not result.claimed:
                    break
                mine.extend(result.sending)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()
            claimed.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # Rows whose lines the other batch held at that moment come back a second later.
    later = dispatch_due(now=WED + timedelta(seconds=5), limit=200).sending
    both = claimed[0] + claimed[1] + later
    assert len(both) == len(set(both)) == 200
    assert set(both) == ids
    assert claimed[0] and claimed[1]
    assert sorted(queued) == sorted(both)
    total = sum(
        LineUsage.objects.filter(line__in=lines).values_list("total_messages_count", flat=True)
    )
    assert total == 200


@pytest.mark.django_db(transaction=True)
def test_racing_dispatchers_keep_every_cap_and_never_deadlock(acme, monkeypatch):
    if not settings.IS_POSTGRES:
        pytest.skip("row locks and SKIP LOCKED need Postgres")
    monkeypatch.setattr("messaging.dispatch._queue_sends", lambda ids: None)
    # Many lines, visited round robin from each batch's own view of the order: two
    # batches that took their caps line by line would lock them in different orders.
    limits = (7, 11, 13, 5, 9, 6, 8, 12, 10, 4)
    caps = {make_line(acme, daily_total_messages_limit=limit).pk: limit for limit in limits}
    Message.objects.bulk_create(
        [
            Message(workspace=acme, recipient_phone=f"+1415555{i:04d}", body=f"m{i}")
            for i in range(200)
        ]
    )

    def dispatcher(_index):
        sent = 0
        while True:
            result = dispatch_due(now=WED, limit=10)
            sent += len(result.sending)
            if not result.claimed:
                return sent

    outcomes = run_in_threads(dispatcher, 8)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    # A line another batch held at that moment was busy: its messages come back a
    # second later. Whatever is left is taken now by one dispatcher, within the caps.
    later = dispatch_due(now=WED + timedelta(seconds=5), limit=200)
    assert sum(outcomes) + len(later.sending) == sum(caps.values()) == 85
    used = dict(
        LineUsage.objects.filter(line__in=list(caps)).values_list("line_id", "total_messages_count")
    )
    assert used == caps
    assert Message.objects.filter(status="sending").count() == 85
    # The rest wait for tomorrow's caps.
    assert Message.objects.filter(status="scheduled", due_at__gt=WED).count() == 115


def test_two_messages_to_a_new_recipient_share_one_line_and_one_new_conversation(acme):
    lines = [make_line(acme) for _ in range(3)]
    first = enqueue(acme, body="One")
    second = enqueue(acme, body="Two")
    dispatch_due(now=WED)
    assert reload(first).line_id == reload(second).line_id
    assert sum(LineUsage.objects.filter(line__in=lines).values_list(
        "new_conversations_count", flat=True)) == 1  # fmt: skip
    # A later batch, while those are still in flight, keeps the same line too.
    third = enqueue(acme, body="Three")
    dispatch_due(now=WED + timedelta(seconds=1))
    assert reload(third).line_id == reload(first).line_id


def test_writers_share_one_queued_dispatch_run(
    acme, monkeypatch, django_capture_on_commit_callbacks
):
    """Without eager tasks, a burst of writes queues one run, which starts a moment
    later to take the rows written meanwhile; a run that starts clears the flag, so
    rows written after it get a run of their own."""
    from django.core.cache import cache

    from messaging import services, tasks

    make_line(acme)
    queued = []
    delays = []

    def apply_async(args, countdown):
        queued.append(args[0])
        delays.append(countdown)

    monkeypatch.setattr(tasks.dispatch_messages, "apply_async", apply_async)
    conf = tasks.dispatch_messages.app.conf
    conf.task_always_eager = False
    cache.delete(services.DISPATCH_WAKE_KEY)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            first = enqueue(acme, phone="+14155550102")
        with django_capture_on_commit_callbacks(execute=True):
            enqueue(acme, phone="+14155550104")
        assert queued == [[first.pk]]
        assert delays == [services.DISPATCH_DELAY_SECONDS] and 0 < delays[0] < 1

        monkeypatch.setattr(tasks, "dispatch_due", lambda limit: services_result(0))
        tasks.dispatch_messages.run([first.pk])  # the run starts: the flag is cleared
        with django_capture_on_commit_callbacks(execute=True):
            third = enqueue(acme, phone="+14155550106")
        assert queued[-1] == [third.pk] and len(queued) == 2
    finally:
        conf.task_always_eager = True
        cache.delete(services.DISPATCH_WAKE_KEY)


def services_result(claimed):
    from messaging.dispatch import DispatchResult

    return DispatchResult(sending=["x"] * claimed)


def test_a_held_row_is_never_claimed_however_due(acme):
    make_line(acme)
    held = enqueue(acme)
    Message.objects.filter(pk=held.pk).update(status="scheduled", held=True)
    free = enqueue(acme, phone="+14155550103")
    assert dispatch_due(now=WED).sending == [free.pk]
    assert dispatch_due(now=WED + timedelta(days=365), message_ids=[held.pk]).claimed == 0
    held = reload(held)
    assert (held.status, held.held, held.sending_started_at) == ("scheduled", True, None)


def test_the_claim_can_read_the_due_index_which_leaves_held_rows_out(acme):
    if connection.vendor != "postgresql":
        pytest.skip("reads a Postgres plan")
    make_line(acme)
    enqueue(acme)
    with CaptureQueriesContext(connection) as queries:
        dispatch_due(now=WED)
    claim = next(q["sql"] for q in queries if "FOR NO KEY UPDATE" in q["sql"])
    with transaction.atomic(), connection.cursor() as cursor:
        # Tiny tables are read whole; without that way out the planner shows
        # whether the claim's conditions let it use the partial index.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + claim)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_due_waiting" in plan


@pytest.mark.django_db(transaction=True)
def test_a_line_locked_by_a_worker_does_not_hold_up_messages_written_for_it(acme):
    """The row locks that serialize work on a line (its checks, its send budget) are
    FOR NO KEY UPDATE: a request writing a message on that line checks the foreign
    key with FOR KEY SHARE, which such a lock does not block."""
    if not settings.IS_POSTGRES:
        pytest.skip("row lock modes are Postgres's")
    from lines.budget import SendBudget

    line = make_line(acme)
    # A worker holding the line's row lock, as its send budget does.
    with held_by_another_transaction(lambda: SendBudget([line.pk], now=WED)) as release:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # blocked: an error, not a hang
        try:
            with transaction.atomic():
                Message.objects.create(
                    workspace=acme, line=line, recipient_phone="+14155550109", body="Hi"
                )
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
        assert release.is_set() is False  # written while the worker still held its lock
    assert Message.objects.filter(line=line).count() == 1
