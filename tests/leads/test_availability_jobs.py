from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from leads import availability
from leads.availability import availability_job_create, availability_job_process
from leads.models import AvailabilityJob, Lead
from leads.signals import leads_created
from leads.tasks import availability_jobs_resume as resume_task
from lines.models import Line
from lines.services import line_create, line_health_check, line_update
from tests.lines.relay_fixtures import availability_requests

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)


@pytest.fixture
def queued(monkeypatch):
    """Jobs are queued here instead of running, so a test drives them with its own clock."""
    jobs = []
    monkeypatch.setattr(availability, "_queue_job", jobs.append)
    return jobs


def leads_for(workspace, count, start=100):
    return [
        Lead.objects.create(workspace=workspace, phone=f"+1415555{i:04d}")
        for i in range(start, start + count)
    ]


def job_state(job):
    job.refresh_from_db()
    return job.status, job.done, job.successful, job.errors


def test_a_job_waits_for_quota_and_resumes_on_the_next_utc_day(
    acme,
    make_line,
    queued,
    django_capture_on_commit_callbacks,
):
    make_line(acme, daily_availability_checks_limit=4)
    leads = leads_for(acme, 10)
    with django_capture_on_commit_callbacks(execute=True):
        job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads])
    assert queued == [job.pk]
    assert Lead.objects.filter(availability_status="checking").count() == 10

    assert availability_job_process(job_id=job.pk, now=NOON) is None
    assert job_state(job) == ("waiting_quota", 4, 4, 0)
    assert job.resume_at == MIDNIGHT
    assert Lead.objects.filter(availability_status="checking").count() == 6

    queued.clear()
    assert availability.availability_jobs_resume(now=MIDNIGHT - timedelta(seconds=1)) == []
    assert availability.availability_jobs_resume(now=MIDNIGHT + timedelta(seconds=1)) == [job.pk]
    assert queued == [job.pk]

    availability_job_process(job_id=job.pk, now=MIDNIGHT + timedelta(seconds=1))
    assert job_state(job) == ("waiting_quota", 8, 8, 0)
    availability_job_process(job_id=job.pk, now=MIDNIGHT + timedelta(days=1, seconds=1))
    assert job_state(job) == ("done", 10, 10, 0)
    assert job.finished_at is not None
    assert not Lead.objects.filter(availability_status="checking").exists()


def test_a_job_hands_back_the_gap_instead_of_sleeping(acme, make_line, queued):
    make_line(acme, check_gap_seconds=3)
    leads = leads_for(acme, 3)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads])
    countdown = availability_job_process(job_id=job.pk, now=NOON)
    assert countdown == pytest.approx(3.0, abs=0.1)
    assert job_state(job) == ("running", 1, 1, 0)
    # Held for the successor task, with a margin after which the sweeper takes over.
    margin = timedelta(seconds=availability.JOB_HANDOFF_MARGIN_SECONDS)
    assert job.resume_at == NOON + timedelta(seconds=3)
    assert job.lease_until == job.resume_at + margin
    countdown = availability_job_process(job_id=job.pk, now=NOON + timedelta(seconds=3))
    assert job_state(job)[1] == 2


def test_a_second_task_for_a_held_job_backs_off(acme, make_line, queued):
    make_line(acme)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads_for(acme, 2)])
    AvailabilityJob.objects.filter(pk=job.pk).update(
        status="running", lease_until=NOON + timedelta(minutes=5)
    )
    assert availability_job_process(job_id=job.pk, now=NOON) is None
    assert job_state(job)[1] == 0
    # A dead task's lease runs out; the periodic task picks the job up again.
    later = NOON + timedelta(minutes=6)
    assert availability.availability_jobs_resume(now=later) == [job.pk]
    availability_job_process(job_id=job.pk, now=later)
    assert job_state(job) == ("done", 2, 2, 0)


def test_a_job_with_a_dead_relay_marks_leads_error_and_finishes(acme, queued):
    line = line_create(
        workspace=acme, server_url="http://127.0.0.1:9", relay_password="x", check_gap_seconds=0
    )
    leads = leads_for(acme, 3)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads])
    availability_job_process(job_id=job.pk, now=NOON)
    assert job_state(job) == ("done", 3, 0, 3)
    assert set(Lead.objects.values_list("availability_status", flat=True)) == {"error"}
    line.refresh_from_db()
    assert line.health_status == "down"


def test_a_job_without_a_line_fails_and_marks_leads(acme, make_line, queued):
    line = make_line(acme)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads_for(acme, 30)])
    line.delete()
    availability_job_process(job_id=job.pk, now=NOON)
    assert job_state(job) == ("failed", 30, 0, 30)
    assert job.detail == "No active line configured"
    assert set(Lead.objects.values_list("availability_status", flat=True)) == {"no_active_line"}


def test_deleted_leads_are_skipped(acme, make_line, queued):
    make_line(acme)
    leads = leads_for(acme, 3)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads])
    leads[1].delete()
    availability_job_process(job_id=job.pk, now=NOON)
    assert job_state(job) == ("done", 3, 2, 0)


def test_a_running_job_can_be_cancelled(acme, make_line, queued):
    make_line(acme, check_gap_seconds=3)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads_for(acme, 3)])
    availability_job_process(job_id=job.pk, now=NOON)
    assert availability.availability_job_cancel(workspace=acme, job_id=job.pk)
    assert availability_job_process(job_id=job.pk, now=NOON + timedelta(seconds=3)) is None
    assert job_state(job) == ("cancelled", 1, 1, 0)
    statuses = sorted(Lead.objects.values_list("availability_status", flat=True))
    assert statuses == ["", "", "available"]
    assert not availability.availability_job_cancel(workspace=acme, job_id=job.pk)


def test_new_leads_are_checked_automatically(
    acme,
    make_line,
    relay,
    django_capture_on_commit_callbacks,
):
    make_line(acme)
    leads = leads_for(acme, 7)
    with django_capture_on_commit_callbacks(execute=True):
        leads_created.send(sender=Lead, workspace=acme, lead_ids=[x.pk for x in leads])
    job = AvailabilityJob.objects.get(workspace=acme)
    assert (job.source, job.status, job.done) == ("import", "done", 7)
    assert Lead.objects.filter(availability_status="available").count() == 4
    assert availability_requests(relay) == 7


def test_new_leads_without_a_line_are_marked(acme):
    leads = leads_for(acme, 2)
    leads_created.send(sender=Lead, workspace=acme, lead_ids=[x.pk for x in leads])
    assert not AvailabilityJob.objects.exists()
    assert set(Lead.objects.values_list("availability_status", flat=True)) == {"no_active_line"}


def test_the_job_periodic_tasks_are_registered():
    from django.apps import apps

    tasks = [task for _, task, _ in apps.get_app_config("leads").periodic_tasks]
    assert "leads.tasks.availability_jobs_resume" in tasks
    assert "leads.tasks.availability_cache_purge" in tasks


def test_expired_answers_are_purged(acme, make_line):
    from leads.models import AvailabilityCacheEntry

    make_line(acme)
    availability.availability_check_address(workspace=acme, address="+14155550133", now=NOON)
    availability.availability_check_address(workspace=acme, address="+14155550132", now=NOON)
    assert availability.cache_purge_expired(now=NOON + timedelta(days=2)) == 1
    assert list(AvailabilityCacheEntry.objects.values_list("address", flat=True)) == [
        "+14155550132"
    ]


@pytest.mark.parametrize("force", [False, True])
def test_a_lead_stopped_by_the_gap_keeps_the_answers_it_paid_for(
    acme, make_line, relay, queued, force
):
    make_line(acme, check_gap_seconds=3)
    person = Lead.objects.create(workspace=acme, phone="+14155550131", email="p@icloud.com")
    job = availability_job_create(workspace=acme, lead_ids=[person.pk], force=force)
    # The phone is answered (not on iMessage), then the gap stops the lead halfway.
    assert availability_job_process(job_id=job.pk, now=NOON) == pytest.approx(3.0, abs=0.1)
    assert job_state(job) == ("running", 0, 0, 0)
    assert availability_job_process(job_id=job.pk, now=NOON + timedelta(seconds=3)) is None
    assert job_state(job) == ("done", 1, 1, 0)
    assert availability_requests(relay) == 2
    person.refresh_from_db()
    assert (person.availability_status, person.availability_address) == (
        "available", "p@icloud.com",
    )  # fmt: skip


def test_a_lead_stopped_by_the_quota_keeps_the_answers_it_paid_for(acme, make_line, relay, queued):
    make_line(acme, daily_availability_checks_limit=1)
    person = Lead.objects.create(workspace=acme, phone="+14155550131", email="p@icloud.com")
    job = availability_job_create(workspace=acme, lead_ids=[person.pk])
    assert availability_job_process(job_id=job.pk, now=NOON) is None
    assert job_state(job) == ("waiting_quota", 0, 0, 0)
    availability_job_process(job_id=job.pk, now=MIDNIGHT + timedelta(seconds=1))
    assert job_state(job) == ("done", 1, 1, 0)
    assert availability_requests(relay) == 2


def test_a_task_checks_its_time_before_every_relay_request(acme, make_line, relay, queued):
    make_line(acme)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads_for(acme, 3)])
    # No time at all: each turn still gets one request, then hands the job on.
    for done in (1, 2):
        assert availability_job_process(job_id=job.pk, now=NOON, budget_seconds=0) == 0
        assert job_state(job) == ("running", done, done, 0)
    availability_job_process(job_id=job.pk, now=NOON, budget_seconds=0)
    assert job_state(job) == ("done", 3, 3, 0)
    assert availability_requests(relay) == 3


def test_a_task_that_outlived_its_lease_does_not_overwrite_its_successor(
    acme, make_line, relay, queued, monkeypatch
):
    make_line(acme)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads_for(acme, 3)])
    later = NOON + timedelta(seconds=availability.JOB_LEASE_SECONDS + 60)
    real_get_client = availability.get_client
    stalled = []

    class StallingRelay:
        """The first request hangs past the lease: meanwhile the sweeper re-queues the
        job and a second task does all of it."""

        def __init__(self, client):
            self.client = client

        def check(self, address):
            if not stalled:
                stalled.append(address)
                assert availability.availability_jobs_resume(now=later) == [job.pk]
                assert availability_job_process(job_id=job.pk, now=later) is None
                assert job_state(job) == ("done", 3, 3, 0)
            return self.client.check(address)

    monkeypatch.setattr(
        availability, "get_client", lambda line: StallingRelay(real_get_client(line))
    )
    # The first task wakes up, finds the lease is not its own any more, and stops.
    assert availability_job_process(job_id=job.pk, now=NOON) is None
    assert job_state(job) == ("done", 3, 3, 0)
    assert availability_requests(relay) == 4  # 3 by the second task + the stalled one


def test_a_hand_off_that_nobody_takes_is_resumed_by_the_periodic_task(
    acme, make_line, queued, monkeypatch
):
    make_line(acme, check_gap_seconds=3)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads_for(acme, 2)])
    assert availability_job_process(job_id=job.pk, now=NOON) == pytest.approx(3.0, abs=0.1)
    queued.clear()  # the successor task is lost
    margin = availability.JOB_HANDOFF_MARGIN_SECONDS
    monkeypatch.setattr(timezone, "now", lambda: NOON + timedelta(seconds=10))
    assert resume_task() == 0
    monkeypatch.setattr(timezone, "now", lambda: NOON + timedelta(seconds=3 + margin + 1))
    assert resume_task() == 1
    assert queued == [job.pk]
    availability_job_process(job_id=job.pk, now=NOON + timedelta(seconds=3 + margin + 1))
    assert job_state(job) == ("done", 2, 2, 0)


def test_a_running_job_whose_task_died_is_resumed_by_the_periodic_task(
    acme, make_line, queued, monkeypatch
):
    make_line(acme)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads_for(acme, 2)])
    lease = NOON + timedelta(seconds=availability.JOB_LEASE_SECONDS)
    AvailabilityJob.objects.filter(pk=job.pk).update(status="running", lease_until=lease)
    queued.clear()
    monkeypatch.setattr(timezone, "now", lambda: lease - timedelta(seconds=1))
    assert resume_task() == 0
    monkeypatch.setattr(timezone, "now", lambda: lease + timedelta(seconds=1))
    assert resume_task() == 1
    assert queued == [job.pk]
    availability_job_process(job_id=job.pk, now=lease + timedelta(seconds=1))
    assert job_state(job) == ("done", 2, 2, 0)


def _waiting_job(acme, make_line, **line_fields):
    line = make_line(acme, daily_availability_checks_limit=1, **line_fields)
    job = availability_job_create(workspace=acme, lead_ids=[x.pk for x in leads_for(acme, 3)])
    availability_job_process(job_id=job.pk, now=NOON)
    assert job_state(job) == ("waiting_quota", 1, 1, 0)
    return line, job


@pytest.mark.parametrize("change", ["new_line", "limit_raised", "activated", "healthy"])
def test_a_waiting_job_resumes_as_soon_as_a_line_has_quota(
    acme, globex, make_line, relay, queued, django_capture_on_commit_callbacks, change
):
    line, job = _waiting_job(acme, make_line)
    spare = make_line(acme, is_active=False)
    if change == "healthy":
        update(spare, is_active=True)
        Line.objects.filter(pk=spare.pk).update(health_status=Line.Health.DOWN)
    make_line(globex)  # another workspace's line wakes nothing here
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        if change == "new_line":
            make_line(acme)
        elif change == "limit_raised":
            update(line, daily_availability_checks_limit=5)
        elif change == "activated":
            update(spare, is_active=True)
        else:
            line_health_check(line=Line.objects.get(pk=spare.pk))
    assert queued == [job.pk]
    availability_job_process(job_id=job.pk, now=NOON)
    assert job_state(job) == ("done", 3, 3, 0)


def test_a_lowered_limit_or_another_change_wakes_nothing(
    acme, make_line, queued, django_capture_on_commit_callbacks
):
    line, job = _waiting_job(acme, make_line)
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        update(line, daily_availability_checks_limit=0, first_name="Ada")
    assert queued == []


def update(line, **fields):
    return line_update(workspace=line.workspace, line_id=line.pk, **fields)
