"""Leases on `sending` rows, against the relay simulator: a dead worker's rows are
taken back within a minute and sent exactly once; a live run keeps its rows
through a long relay call."""

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from messaging import dispatch, leases, sending, services
from messaging.dispatch import dispatch_due
from messaging.models import Message
from messaging.sending import message_send, messages_reconcile_stuck
from messaging.services import message_enqueue

NOTHING = {"requeued": 0, "sent": 0, "failed": 0}
# How long after a worker's death its rows are certainly taken back.
TAKEN_BACK_AFTER = leases.LEASE + leases.SWEEP_EVERY


def later(**delta):
    return timezone.now() + timedelta(**delta)


def dispatched(workspace, body="Hi"):
    message = message_enqueue(workspace=workspace, body=body, recipient_phone="+14155550102")
    assert dispatch_due(message_ids=[message.pk]).sending == [message.pk]
    return message


def test_a_dead_worker_is_noticed_within_a_minute():
    from messaging.apps import MessagingConfig
    from messaging.tasks import send_messages
    from tuco.celery import app

    assert timedelta(minutes=1) > TAKEN_BACK_AFTER
    schedule = {task: every for _, task, every in MessagingConfig.periodic_tasks}
    assert schedule["messaging.tasks.reconcile_stuck_messages"] == leases.SWEEP_EVERY.seconds
    # A task whose worker process died goes back to the queue; one process takes
    # one long task at a time.
    assert send_messages.acks_late and send_messages.reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1


def test_the_worker_rides_out_a_broker_outage():
    """The bench (tests/test_faults_bench.py) cuts Redis under a real worker; this is
    what makes it ride that out: retries forever, every 2 s at most, from start-up
    on, and the tasks it runs are not cancelled when the connection drops."""
    from tuco.celery import Consumer, app

    assert app.conf.broker_connection_retry and app.conf.broker_connection_retry_on_startup
    assert app.conf.broker_connection_max_retries is None
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is False
    assert app.conf.worker_consumer == "tuco.celery:Consumer"

    class Broker:
        def ensure_connection(self, errback, max_retries, **kwargs):
            self.retries = (max_retries, kwargs)
            return self

    consumer = Consumer.__new__(Consumer)
    consumer.app, consumer.first_connection_attempt = app, True
    broker = Broker()
    assert consumer.ensure_connected(broker) is broker
    max_retries, kwargs = broker.retries
    assert max_retries is None
    assert kwargs["interval_max"] <= 2 and kwargs["interval_start"] <= 1


def test_a_broker_connection_that_cannot_be_closed_does_not_stop_the_worker():
    import logging

    from kombu.message import Message as KombuMessage

    from tuco.celery import Consumer, app

    class Controller:
        use_eventloop = False

    class BrokenConnection:
        connection_errors = (ConnectionError,)
        channel_errors = ()

        def collect(self, socket_timeout=None):
            pass

        def close(self):
            # What kombu's Redis channel raised when it tried to put the tasks it held
            # back on the queue through a connection that was already gone.
            raise AttributeError("'NoneType' object has no attribute 'hostname'")

    consumer = Consumer(lambda *args: None, app=app, controller=Controller())
    consumer.connection = BrokenConnection()
    consumer.on_connection_error_after_connected(ConnectionError("Connection closed by server."))
    assert consumer.connection is None  # and the consumer goes on to reconnect

    # A task that ends after the connection was lost cannot be acknowledged on it:
    # logged, not the end of the worker (the broker hands the task out again).
    class ClosedChannel:
        no_ack_consumers = None

        def basic_ack(self, delivery_tag, multiple=False):
            raise AttributeError("'NoneType' object has no attribute 'hostname'")

    message = KombuMessage(body=b"{}", channel=ClosedChannel(), delivery_tag=1)
    message.ack_log_error(logging.getLogger("celery.worker"), consumer.connection_errors)
    assert not message.acknowledged
    # A lost connection is something the consumer recovers from by reconnecting.
    assert issubclass(AttributeError, consumer.connection_errors)


@pytest.mark.django_db
def test_rows_a_dead_worker_claimed_are_taken_back_and_sent_once(acme, line, sim):
    message = dispatched(acme)
    # The send task claimed the row, then its worker died before calling the relay.
    assert sending._claim_rows([message.pk], timezone.now()) == [message.pk]
    assert messages_reconcile_stuck(now=later(seconds=20)) == NOTHING  # lease still held

    outcome = messages_reconcile_stuck(now=later(seconds=TAKEN_BACK_AFTER.total_seconds()))
    assert outcome == {**NOTHING, "requeued": 1}
    message.refresh_from_db()
    assert message.status == "pending"
    assert sim.sent == []

    dispatch_due(now=later(minutes=1), message_ids=[message.pk])
    assert message_send(message_id=message.pk) == "sent"
    assert [m["text"] for m in sim.sent] == ["Hi"]


@pytest.mark.django_db
def test_a_worker_that_died_after_the_relay_call_is_settled_by_temp_guid_within_a_minute(
    acme, line, sim, monkeypatch
):
    message = dispatched(acme, body="Exactly once")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("worker killed")

    monkeypatch.setattr(sending, "_record_sent", crash)
    with pytest.raises(KeyboardInterrupt):
        message_send(message_id=message.pk)
    monkeypatch.undo()
    assert len(sim.sent) == 1

    outcome = messages_reconcile_stuck(now=later(seconds=TAKEN_BACK_AFTER.total_seconds()))
    assert outcome == {**NOTHING, "sent": 1}
    message.refresh_from_db()
    assert (message.status, message.external_message_id) == ("sent", sim.sent[0]["guid"])
    assert len(sim.sent) == 1


@pytest.mark.django_db
def test_a_send_the_relay_may_still_be_writing_is_not_resent_yet(acme, line, sim):
    message = dispatched(acme, body="In flight")
    sending._claim_rows([message.pk], timezone.now())
    # The worker died during the relay call; the relay has nothing (yet).
    Message.objects.filter(pk=message.pk).update(
        channel_called_at=timezone.now(), sent_address="+14155550102", rendered_body="In flight"
    )
    soon = later(seconds=TAKEN_BACK_AFTER.total_seconds())
    assert messages_reconcile_stuck(now=soon) == NOTHING
    assert Message.objects.get(pk=message.pk).status == "sending"

    settled = later(seconds=(sending.SEND_SETTLE + leases.LEASE).total_seconds() + 1)
    assert messages_reconcile_stuck(now=settled) == {**NOTHING, "requeued": 1}
    message.refresh_from_db()
    assert (message.status, message.error_message) == ("scheduled", sending.INTERRUPTED)
    dispatch_due(now=message.due_at, message_ids=[message.pk])
    assert message_send(message_id=message.pk) == "sent"
    assert [m["text"] for m in sim.sent] == ["In flight"]


@pytest.mark.django_db
def test_a_run_cannot_send_a_row_the_sweeper_took_back(acme, line, sim):
    message = dispatched(acme, body="Taken back")
    run_started = timezone.now()
    sending._claim_rows([message.pk], run_started)
    messages_reconcile_stuck(now=later(seconds=TAKEN_BACK_AFTER.total_seconds()))
    # The row went back to `pending` and was dispatched again, unclaimed.
    dispatch_due(now=later(minutes=1), message_ids=[message.pk])
    message = Message.objects.select_related("line").get(pk=message.pk)
    message.send_claimed_at = run_started  # what the old run still holds in memory
    assert not sending._mark_channel_called(message, "+14155550102", [])
    assert message_send(message_id=message.pk) == "sent"
    assert len(sim.sent) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.IS_POSTGRES, reason="needs Postgres (set DATABASE_URL)")
def test_a_live_run_keeps_its_lease_through_a_long_relay_call(acme, line, sim, monkeypatch):
    monkeypatch.setattr(leases, "LEASE", timedelta(seconds=2))
    monkeypatch.setattr(sending, "LEASE", timedelta(seconds=2))
    monkeypatch.setattr(leases, "LEASE_RENEW_EVERY", timedelta(seconds=0.1))
    # Committed for real here: the send task is run by hand below, not on commit.
    monkeypatch.setattr(services, "dispatch_on_commit", lambda ids: None)
    monkeypatch.setattr(dispatch, "_queue_sends", lambda ids: None)
    message = dispatched(acme, body="Slow relay")
    sim.configure(latency=2)  # each relay call (the check, then the send) takes 2 s
    outcomes = {}

    def run():
        try:
            outcomes.update(sending.messages_send(message_ids=[message.pk]))
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(3)  # past the 2 s lease, the relay calls still running
    claimed_at = Message.objects.get(pk=message.pk).send_claimed_at
    assert messages_reconcile_stuck() == NOTHING
    row = Message.objects.get(pk=message.pk)
    assert (row.status, row.send_claimed_at) == ("sending", claimed_at)
    assert row.lease_expires_at > timezone.now()
    worker.join()
    assert outcomes == {message.pk: "sent"}
    assert [m["text"] for m in sim.sent] == ["Slow relay"]


# Send tasks that never ran


def _enqueue(workspace, count):
    return [
        message_enqueue(workspace=workspace, body=f"Hi {i}", recipient_phone=f"+1415555{2 * i:04d}")
        for i in range(count)
    ]


def _messages_today(line):
    from lines.selectors import line_today_usage

    return line_today_usage(line).total_messages_count


@pytest.mark.django_db
def test_a_send_task_the_broker_refuses_leaves_no_row_sending(
    acme, line, sim, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    from messaging.tasks import send_messages

    _enqueue(acme, 15)
    queued: list[list[str]] = []
    broker = {"takes": 1}  # the broker goes away after the first task

    def delay(ids):
        if len(queued) >= broker["takes"]:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        queued.append(ids)

    monkeypatch.setattr(send_messages, "delay", delay)
    with django_capture_on_commit_callbacks(execute=True):
        result = dispatch_due()
    assert len(result.sending) == 15
    assert len(queued) == 1 and len(queued[0]) == sending.SEND_CHUNK
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert sorted(statuses[pk] for pk in queued[0]) == ["sending"] * 10
    back = [pk for pk in result.sending if pk not in queued[0]]
    assert sorted(statuses[pk] for pk in back) == ["pending"] * 5
    # The usage the dispatcher took for them was given back, and nothing is left for
    # the sweeper to find.
    assert _messages_today(line) == 10
    assert not Message.objects.filter(pk__in=back, lease_expires_at__isnull=False).exists()

    # The broker is back: the next dispatch hands them out again.
    broker["takes"] = 100
    with django_capture_on_commit_callbacks(execute=True):
        again = dispatch_due()
    assert sorted(again.sending) == sorted(back)
    for ids in queued:
        sending.messages_send(message_ids=ids)
    assert sorted(m["text"] for m in sim.sent) == sorted(f"Hi {i}" for i in range(15))
    assert _messages_today(line) == 15


@pytest.mark.django_db
def test_a_lost_send_task_is_queued_again_and_its_rows_sent_once(
    acme, line, sim, monkeypatch, django_capture_on_commit_callbacks
):
    from messaging.tasks import send_messages

    queued: list[list[str]] = []
    monkeypatch.setattr(send_messages, "delay", queued.append)
    message = dispatched(acme, body="Lost task")
    lost = [message.pk]  # queued, then lost with the worker that had reserved it
    assert messages_reconcile_stuck(now=later(seconds=20)) == NOTHING  # may still wait

    after = later(seconds=(leases.QUEUED_LEASE + leases.SWEEP_EVERY).total_seconds())
    assert after < later(minutes=1)
    assert messages_reconcile_stuck(now=after) == {**NOTHING, "requeued": 1}
    assert queued == [[message.pk]]
    row = Message.objects.get(pk=message.pk)
    # It kept its line and the usage taken for it, under a new lease.
    assert (row.status, row.line_id, row.send_claimed_at) == ("sending", line.pk, None)
    assert row.lease_expires_at > after
    assert _messages_today(line) == 1
    assert messages_reconcile_stuck(now=after) == NOTHING

    assert sending.messages_send(message_ids=queued[0]) == {message.pk: "sent"}
    # Had the first task only been slow, it now finds its row taken.
    assert sending.messages_send(message_ids=lost) == {message.pk: "skipped"}
    assert [m["text"] for m in sim.sent] == ["Lost task"]
    assert _messages_today(line) == 1


@pytest.mark.django_db
def test_rows_waiting_for_a_line_go_when_it_is_back(
    acme, line, make_sim_line, sim, django_capture_on_commit_callbacks
):
    from lines.models import Line
    from lines.services import line_record_failure
    from lines.tasks import lines_health_check_down

    other = make_sim_line(acme, first_name="Bea")
    for down in (line, other):
        for _ in range(2):
            line_record_failure(line=down, detail="Transaction timeout")
    Line.objects.filter(pk=other.pk).update(is_active=False)
    message = message_enqueue(workspace=acme, body="Waiting", recipient_phone="+14155550102")
    assert dispatch_due().waiting[message.pk] > later(seconds=50)  # NO_LINE_RETRY
    assert Line.objects.get(pk=line.pk).health_status == "down"

    # The relay answers again: the next check of the down lines (every 15 s) finds it,
    # and the row is due at once instead of a minute later.
    with django_capture_on_commit_callbacks(execute=True):
        assert lines_health_check_down() == 1  # the inactive line is not checked
    assert Line.objects.get(pk=line.pk).health_status == "healthy"
    assert Message.objects.get(pk=message.pk).due_at <= timezone.now()
    assert dispatch_due().sending == [message.pk]
