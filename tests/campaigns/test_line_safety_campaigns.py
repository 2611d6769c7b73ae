"""A campaign on two lines, one of which goes bad half-way (signed out, or silently
undelivering): the bad line is quarantined, the leads it has not contacted yet move to
the healthy line, nobody gets a message twice, and the line comes back after its
cool-down."""

from collections import Counter
from datetime import timedelta

import pytest
import requests

from campaigns.models import Enrollment
from lines.models import Line
from lines.services import line_create, line_health_check
from lines.simulator import RelaySimulator
from messaging.inbound import relay_poll_line
from messaging.models import Message
from messaging.safety import messages_mark_undelivered
from tests.campaigns.conftest import SIM_PASSWORD, drive

pytestmark = pytest.mark.django_db(transaction=True)

ONE_STEP = [{"message": "Hi {firstName}", "delay": 0, "delayUnit": "minutes"}]


@pytest.fixture
def bad_sim():
    with RelaySimulator(password=SIM_PASSWORD, delivery_delay=0) as simulator:
        yield simulator


@pytest.fixture
def lines(acme, make_line, bad_sim):
    good = make_line(daily_new_conversations_limit=100, daily_total_messages_limit=100)
    bad = line_create(
        workspace=acme,
        server_url=bad_sim.url,
        relay_password=SIM_PASSWORD,
        device_gap_seconds=0,
        contact_gap_seconds=0,
        check_gap_seconds=0,
        daily_new_conversations_limit=3,
        daily_total_messages_limit=3,
    )
    Line.objects.filter(pk=bad.pk).update(health_status="healthy")
    return good, Line.objects.get(pk=bad.pk)


def tick(clock, *lines):
    """One minute of the workers: pacing and dispatch, the relays' receipts (polled,
    as the relay webhooks have nowhere to go here), the undelivered sweep."""
    drive(clock, rounds=1, step=timedelta(minutes=1))
    for line in lines:
        relay_poll_line(line=Line.objects.get(pk=line.pk))
    messages_mark_undelivered()


def received(*sims) -> Counter:
    return Counter(m["handle"]["address"] for sim in sims for m in sim.sent)


def start(api, create_campaign, lead_list, line_ids):
    campaign = create_campaign(listId=lead_list.pk, lineIds=line_ids, steps=ONE_STEP)
    response = api.put(
        "/api/campaigns", {"campaignId": campaign["_id"], "action": "start"}, format="json"
    )
    assert response.status_code == 200, response.json()
    return campaign


def test_leads_move_off_a_signed_out_line_without_duplicates(
    api, clock, sim, bad_sim, lines, make_list, create_campaign
):
    good, bad = lines
    Line.objects.filter(pk__in=[good.pk, bad.pk]).update(
        daily_new_conversations_limit=100, daily_total_messages_limit=100, device_gap_seconds=60
    )
    lead_list = make_list(10)
    start(api, create_campaign, lead_list, [good.pk, bad.pk])
    for _ in range(2):
        tick(clock, good, bad)
    sent_before = len(bad_sim.sent)
    assert sent_before == 2

    requests.post(f"{bad_sim.url}/sim/config", json={"imessage_signed_in": False}, timeout=5)
    for _ in range(10):
        tick(clock, good, bad)

    bad.refresh_from_db()
    assert bad.health_status == Line.Health.QUARANTINED
    assert "not signed in" in bad.safety_action_reason
    assert len(bad_sim.sent) == sent_before  # nothing more went into the bad line
    counts = received(sim, bad_sim)
    assert len(counts) == 10 and set(counts.values()) == {1}  # everyone once
    assert not Message.objects.filter(line=bad, status__in=["pending", "scheduled"]).exists()
    assert Enrollment.objects.filter(line=good).count() == 10 - sent_before

    # Back after the cool-down, once signed in again.
    requests.post(f"{bad_sim.url}/sim/config", json={"imessage_signed_in": True}, timeout=5)
    line_health_check(line=bad, now=bad.safety_action_until + timedelta(minutes=1))
    assert Line.objects.get(pk=bad.pk).health_status == Line.Health.HEALTHY


def test_a_silently_undelivering_line_is_quarantined_and_its_leads_move(
    api, clock, sim, bad_sim, lines, make_list, create_campaign, settings
):
    settings.UNDELIVERED_AFTER_MINUTES = 5
    settings.LINE_QUARANTINE_AFTER_FAILURES = 3
    good, bad = lines
    Line.objects.filter(pk=bad.pk).update(
        daily_new_conversations_limit=100, daily_total_messages_limit=100, device_gap_seconds=60
    )
    Line.objects.filter(pk=good.pk).update(device_gap_seconds=60)
    requests.post(f"{bad_sim.url}/sim/config", json={"silent_undelivered": True}, timeout=5)
    lead_list = make_list(20)
    start(api, create_campaign, lead_list, [good.pk, bad.pk])

    for _ in range(15):
        tick(clock, good, bad)

    bad.refresh_from_db()
    assert bad.health_status == Line.Health.QUARANTINED
    # Sends into the bad line before it was taken out: those of the first five
    # minutes (one a minute) and the run of three it took to be sure.
    assert len(bad_sim.sent) <= 8
    counts = received(sim, bad_sim)
    assert len(counts) == 20 and set(counts.values()) == {1}
    assert Message.objects.filter(line=bad, undelivered_at__isnull=False).count() == len(
        bad_sim.sent
    )


def test_with_the_defaults_a_silent_line_is_held_after_a_few_sends_and_its_leads_move(
    api, clock, sim, bad_sim, lines, make_list, create_campaign
):
    from messaging.tasks import mark_undelivered_messages

    good, bad = lines
    Line.objects.filter(pk=bad.pk).update(
        daily_new_conversations_limit=100, daily_total_messages_limit=100, device_gap_seconds=60
    )
    Line.objects.filter(pk=good.pk).update(device_gap_seconds=60)
    requests.post(f"{bad_sim.url}/sim/config", json={"silent_undelivered": True}, timeout=5)
    lead_list = make_list(20)
    start(api, create_campaign, lead_list, [good.pk, bad.pk])

    def minute():
        drive(clock, rounds=1, step=timedelta(minutes=1))
        for line in (good, bad):
            relay_poll_line(line=Line.objects.get(pk=line.pk))
        mark_undelivered_messages()  # beat's task: the undelivered sweep, then the hold

    for _ in range(10):
        minute()
    bad.refresh_from_db()
    assert bad.health_status == Line.Health.HELD
    assert bad.safety_action_reason.startswith("Awaiting delivery receipts")
    # Five unconfirmed sends and those of the two minutes their receipts were waited for.
    held_after = len(bad_sim.sent)
    assert 5 <= held_after <= 7

    # Half an hour on, the held sends are flagged undelivered: five in a row quarantine
    # the line. Nothing more went into it, and everyone got the message once.
    for _ in range(30):
        minute()
    bad.refresh_from_db()
    assert bad.health_status == Line.Health.QUARANTINED
    assert len(bad_sim.sent) == held_after
    counts = received(sim, bad_sim)
    assert len(counts) == 20 and set(counts.values()) == {1}
    assert Enrollment.objects.filter(line=good).count() == 20 - held_after
