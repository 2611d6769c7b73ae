"""Background jobs send their checks in rounds: many leads at once, each lead's
addresses still in order, caps held, nothing paid twice."""

from datetime import UTC, datetime

from leads import availability
from leads.availability import availability_check_leads, availability_job_create
from leads.availability import availability_job_process as process
from leads.models import AvailabilityCacheEntry, Lead
from lines.services import line_create, usage_for
from tests.lines.relay_fixtures import PASSWORD, availability_requests

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def checks_today(line):
    return usage_for(line=line, now=NOON).availability_checks_count


def state(job):
    job.refresh_from_db()
    return job.status, job.done, job.successful, job.errors


def test_a_job_checks_many_leads_per_round_in_order(acme, relay, make_line, monkeypatch):
    monkeypatch.setattr(availability, "_queue_job", lambda *args, **kwargs: None)
    lines = [make_line(acme, daily_availability_checks_limit=1000) for _ in range(3)]
    # Odd phones are not on iMessage, so those leads go on to their email.
    leads = [
        Lead.objects.create(
            workspace=acme, phone=f"+1415555{1000 + i:04d}", email=f"p{i}@icloud.com"
        )
        for i in range(300)
    ]
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads])
    assert process(job_id=job.pk, now=NOON) is None
    assert state(job) == ("done", 300, 300, 0)
    assert availability_requests(relay) == 450  # 300 phones + 150 emails
    assert sum(checks_today(line) for line in lines) == 450
    for item in Lead.objects.filter(pk__in=[x.pk for x in leads]):
        digit = int(item.phone[-1])
        expected = item.phone if digit % 2 == 0 else item.email
        assert (item.availability_status, item.availability_address) == ("available", expected)
    assert AvailabilityCacheEntry.objects.filter(workspace=acme).count() == 450


def test_a_round_asks_a_shared_address_once(acme, relay, make_line):
    make_line(acme)
    leads = [Lead.objects.create(workspace=acme, email="same@icloud.com") for _ in range(6)]
    batch = availability_check_leads(workspace=acme, leads=leads, now=NOON, concurrency=64)
    assert [r.status for r in batch.results] == ["available"] * 6
    assert availability_requests(relay) == 1


def test_the_quota_stops_a_round_and_keeps_the_lead_order(acme, relay, make_line):
    line = make_line(acme, daily_availability_checks_limit=5)
    # The first lead needs two checks (odd phone, then its email); the others one.
    leads = [Lead.objects.create(workspace=acme, phone="+14155551001", email="a@icloud.com")]
    leads += [Lead.objects.create(workspace=acme, phone=f"+141555520{i}2") for i in range(6)]
    batch = availability_check_leads(workspace=acme, leads=leads, now=NOON, concurrency=64)
    assert isinstance(batch.stopped, availability.AvailabilityQuotaExhausted)
    # Results come in lead order: every lead up to the first unfinished one.
    assert [r.lead_id for r in batch.results] == [x.pk for x in leads[: len(batch.results)]]
    assert checks_today(line) == 5 == availability_requests(relay)
    # Every answer paid for is cached, finished lead or not.
    assert AvailabilityCacheEntry.objects.filter(workspace=acme).count() == 5


def test_a_round_on_an_unreachable_relay_gives_its_slots_back(acme):
    line = line_create(
        workspace=acme,
        server_url="http://127.0.0.1:9",
        relay_password=PASSWORD,
        check_gap_seconds=0,
    )
    leads = [Lead.objects.create(workspace=acme, phone=f"+1415555{3000 + i:04d}") for i in range(7)]
    batch = availability_check_leads(workspace=acme, leads=leads, now=NOON, concurrency=64)
    assert [r.status for r in batch.results] == ["error"] * 7
    assert checks_today(line) == 0
    line.refresh_from_db()
    assert line.health_status == "down"
