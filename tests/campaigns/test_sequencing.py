"""The sequence rules: a step is released once its predecessor has an outcome, at
that send time plus its delay, and exactly once however often the rule runs."""

from datetime import timedelta

import pytest
from django.db import transaction

from campaigns.models import Campaign
from campaigns.pacing import release_first_steps
from campaigns.sequencing import AFTER_FAILURE, advance_sequences
from campaigns.services import campaign_start
from messaging.dispatch import dispatch_due
from messaging.models import Message
from messaging.signals import message_status_changed
from tests.campaigns.conftest import list_leads

pytestmark = pytest.mark.django_db

STEPS = [
    {"message": "One", "delay": 0, "delayUnit": "minutes"},
    {"message": "Two", "delay": 90, "delayUnit": "minutes"},
    {"message": "Three", "delay": 1, "delayUnit": "days"},
]


@pytest.fixture
def started(acme, clock, make_line, make_list, create_campaign):
    make_line()
    lead_list = make_list(2)
    body = create_campaign(listId=lead_list.pk, steps=STEPS)
    campaign_start(workspace=acme, campaign_id=body["_id"])
    return Campaign.objects.get(pk=body["_id"]), list_leads(lead_list)


def mark_sent(message, at):
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=at)


def test_the_status_signal_releases_the_next_step_at_send_time_plus_delay(started, clock):
    campaign, (lead, other) = started
    first = Message.objects.get(lead=lead, step_index=0)
    sent_at = clock.now + timedelta(minutes=5)
    mark_sent(first, sent_at)
    message_status_changed.send(
        sender=Message, message_id=first.pk, status="sent", campaign_id=campaign.pk
    )
    second = Message.objects.get(lead=lead, step_index=1)
    assert (second.status, second.held) == ("scheduled", False)
    assert second.due_at == sent_at + timedelta(minutes=90)
    assert second.scheduled_date == second.due_at
    # Nothing else moved: the third step and the other lead stay held.
    assert Message.objects.get(lead=lead, step_index=2).held
    assert set(
        Message.objects.filter(lead=other, step_index__gt=0).values_list("status", "held")
    ) == {("scheduled", True)}


def test_releasing_twice_changes_nothing_the_second_time(started, clock):
    campaign, (lead, _) = started
    first = Message.objects.get(lead=lead, step_index=0)
    mark_sent(first, clock.now)
    assert advance_sequences(campaign=campaign) == 1
    second = Message.objects.get(lead=lead, step_index=1)
    clock.advance(hours=1)
    assert advance_sequences(campaign=campaign) == 0
    assert Message.objects.get(pk=second.pk).due_at == second.due_at


def test_a_cancelled_or_failed_step_cancels_the_rest_with_a_reason(started, clock):
    campaign, (lead, other) = started
    Message.objects.filter(lead=lead, step_index=0).update(status="cancelled")
    Message.objects.filter(lead=other, step_index=0).update(status="failed")
    advance_sequences(campaign=campaign)
    statuses = Message.objects.filter(lead=lead).order_by("step_index")
    assert list(statuses.values_list("status", flat=True)) == ["cancelled"] * 3
    assert (
        list(
            Message.objects.filter(lead=other, step_index__gt=0).values_list(
                "status", "cancel_reason"
            )
        )
        == [("cancelled", AFTER_FAILURE)] * 2
    )


def test_nothing_is_released_while_paused(started, clock, acme):
    from campaigns.services import campaign_pause

    campaign, (lead, _) = started
    campaign_pause(workspace=acme, campaign_id=campaign.pk)
    first = Message.objects.get(lead=lead, step_index=0)
    mark_sent(first, clock.now)
    message_status_changed.send(
        sender=Message, message_id=first.pk, status="sent", campaign_id=campaign.pk
    )
    assert Message.objects.get(lead=lead, step_index=1).held


def test_the_gate_releases_due_first_steps_and_the_dispatcher_claims_only_those(started, clock):
    campaign, _ = started
    mine = Message.objects.filter(campaign_id=campaign.pk)
    assert set(mine.values_list("status", "held")) == {("scheduled", True)}
    # Held rows are never claimed, however late it gets.
    assert dispatch_due(now=clock.now + timedelta(days=30)).claimed == 0
    assert set(mine.values_list("status", "held")) == {("scheduled", True)}

    with transaction.atomic():
        locked = list(Campaign.objects.select_for_update().filter(pk=campaign.pk))
        released = release_first_steps(campaigns=locked, now=clock.now)
    firsts = mine.filter(step_index=0)
    assert sorted(released) == sorted(firsts.values_list("pk", flat=True))
    assert set(firsts.values_list("status", "held", "due_at")) == {("pending", False, clock.now)}
    assert set(mine.filter(step_index__gt=0).values_list("status", "held")) == {("scheduled", True)}
    assert dispatch_due(now=clock.now + timedelta(days=30)).claimed == len(released) == 2
    assert set(mine.filter(step_index__gt=0).values_list("status", "held")) == {("scheduled", True)}


def test_a_first_step_not_due_yet_stays_held(started, clock):
    campaign, _ = started
    mine = Message.objects.filter(campaign_id=campaign.pk)
    mine.filter(step_index=0).update(scheduled_date=clock.now + timedelta(hours=1))
    with transaction.atomic():
        locked = list(Campaign.objects.select_for_update().filter(pk=campaign.pk))
        assert release_first_steps(campaigns=locked, now=clock.now) == []
    assert set(mine.values_list("status", "held")) == {("scheduled", True)}


def test_pause_holds_released_rows_again(started, clock, acme):
    from campaigns.services import campaign_pause

    campaign, (lead, _) = started
    with transaction.atomic():
        locked = list(Campaign.objects.select_for_update().filter(pk=campaign.pk))
        release_first_steps(campaigns=locked, now=clock.now)
    campaign_pause(workspace=acme, campaign_id=campaign.pk)
    mine = Message.objects.filter(campaign_id=campaign.pk)
    assert set(mine.values_list("status", "held")) == {("scheduled", True)}
    assert dispatch_due(now=clock.now + timedelta(days=30)).claimed == 0
