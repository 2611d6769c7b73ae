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
