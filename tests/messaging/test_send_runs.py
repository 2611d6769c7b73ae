"""One send task run over several claimed rows (messages_send), against the relay
simulator: rows are claimed once, lookups shared, and what one send learns or
writes is what the next send of the run sees."""

import pytest

from messaging.dispatch import dispatch_due
from messaging.models import Conversation, DoNotContact, Message
from messaging.sending import messages_send
from messaging.services import message_enqueue
from tests.lines.relay_fixtures import availability_requests

pytestmark = pytest.mark.django_db


def claimed(workspace, *bodies, phone="+14155550102"):
    """Rows dispatched to `sending` (their send tasks not run)."""
    messages = [message_enqueue(workspace=workspace, body=b, recipient_phone=phone) for b in bodies]
    result = dispatch_due(message_ids=[m.pk for m in messages])
    assert sorted(result.sending) == sorted(m.pk for m in messages)
    return [m.pk for m in messages]


def test_two_rows_to_a_new_recipient_take_one_check_and_one_chat(acme, line, sim):
    first, second = claimed(acme, "One", "Two")
    outcomes = messages_send(message_ids=[first, second])
    assert outcomes == {first: "sent", second: "sent"}
    assert availability_requests(sim) == 1
    # The second send found the thread the first one wrote, so no second new chat.
    assert sim.stats["by_endpoint"].get("chat_new") == 1
    assert sim.stats["by_endpoint"].get("message_text") == 1
    assert [m["text"] for m in sim.sent] == ["One", "Two"]
    conversation = Conversation.objects.get(workspace=acme, address="+14155550102")
    assert conversation.last_message_text == "Two"


def test_a_second_run_of_the_same_rows_sends_nothing(acme, line, sim):
    ids = claimed(acme, "Once")
    assert messages_send(message_ids=ids) == {ids[0]: "sent"}
    assert messages_send(message_ids=ids) == {ids[0]: "skipped"}
    assert len(sim.sent) == 1


def test_a_do_not_contact_entry_read_by_the_run_cancels_only_its_address(acme, line, sim):
    blocked = claimed(acme, "Blocked", phone="+14155550104")
    allowed = claimed(acme, "Allowed", phone="+14155550106")
    DoNotContact.objects.create(workspace=acme, value="+14155550104")
    outcomes = messages_send(message_ids=blocked + allowed)
    assert outcomes == {blocked[0]: "cancelled", allowed[0]: "sent"}
    assert Message.objects.get(pk=blocked[0]).cancel_reason.startswith("+14155550104")
    assert availability_requests(sim) == 1
    assert [m["text"] for m in sim.sent] == ["Allowed"]


def test_a_run_over_two_workspaces_keeps_each_ones_list_to_itself(
    acme, globex, line, make_sim_line, sim
):
    make_sim_line(globex)
    blocked = claimed(acme, "Blocked here", phone="+14155550104")
    elsewhere = claimed(globex, "Allowed there", phone="+14155550104")
    DoNotContact.objects.create(workspace=acme, value="+14155550104")
    outcomes = messages_send(message_ids=blocked + elsewhere)
    assert outcomes == {blocked[0]: "cancelled", elsewhere[0]: "sent"}
    assert [m["text"] for m in sim.sent] == ["Allowed there"]


def test_an_answer_cached_before_the_run_is_not_asked_again(acme, line, sim):
    ids = claimed(acme, "Before")
    messages_send(message_ids=ids)
    later = claimed(acme, "After, to the same person")
    assert messages_send(message_ids=later) == {later[0]: "sent"}
    assert availability_requests(sim) == 1


def test_the_send_task_sends_its_rows_in_one_run(acme, line, sim, monkeypatch):
    from messaging import sending, tasks

    ids = claimed(acme, "One", "Two", "Three")
    runs = []
    real = sending.messages_send
    monkeypatch.setattr(tasks, "messages_send", lambda **kw: runs.append(kw) or real(**kw))
    assert tasks.send_messages.run(ids) == dict.fromkeys(ids, "sent")
    assert len(runs) == 1


def test_a_run_that_fails_unexpectedly_leaves_its_rows_to_one_by_one_sends(
    acme, line, sim, monkeypatch
):
    from messaging import tasks

    ids = claimed(acme, "One", "Two")

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(tasks, "messages_send", broken)
    assert tasks.send_messages.run(ids) == dict.fromkeys(ids, "sent")
    assert [m["text"] for m in sim.sent] == ["One", "Two"]


def test_a_slow_run_skips_rows_the_sweeper_took_back(acme, line, sim, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from messaging import sending

    first, second, third = claimed(acme, "One", "Two", "Three")
    real = sending._send_claimed

    def slow_first(message, now, lookups):
        outcome = real(message, now, lookups)
        if message.pk == first:
            # Meanwhile the sweeper took the second row back (its lease ran out).
            Message.objects.filter(pk=second).update(status="pending", send_claimed_at=None)
        return outcome

    monkeypatch.setattr(sending, "_send_claimed", slow_first)
    started = timezone.now() - sending.LEASE - timedelta(seconds=1)
    outcomes = sending.messages_send(message_ids=[first, second, third], now=started)
    assert outcomes == {first: "sent", second: "skipped", third: "sent"}
    assert Message.objects.get(pk=second).status == "pending"
    assert [m["text"] for m in sim.sent] == ["One", "Three"]
