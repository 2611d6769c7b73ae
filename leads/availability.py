"""The iMessage availability engine: decides, caches and records.

One path for every caller (API, background jobs, automatic checks after an
import, the send pipeline): normalize the address, answer from the cache when
the answer is fresh, otherwise claim a slot on a line (round robin, daily cap
and minimum gap held by the database) and ask its relay. The relay call never
runs inside a database transaction. A slot whose request never reached the
relay is given back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from leads.models import AVAILABILITY_ORDER, AvailabilityCacheEntry, AvailabilityJob, Lead
from leads.normalize import InvalidIdentifier, normalize_email, normalize_phone
from leads.signals import lead_availability_updated
from lines import services as line_services
from lines.models import Line
from lines.relay import RelayError, get_client
from tuco.errors import QuotaExhausted, ServiceError, ValidationFailed

logger = logging.getLogger(__name__)

Status = Lead.Availability
QUOTA_MESSAGE = "Daily availability check quota exhausted"
# The synchronous path waits for a line's gap, but not for ever: a request that
# would wait longer than this answers 503 with Retry-After instead.
MAX_SYNC_WAIT_SECONDS = 30.0
DEFAULT_REGION = "US"


class NoActiveLine(ServiceError):
    status = 400
    code = "NO_ACTIVE_LINE"

    def __init__(self):
        super().__init__("No active line configured")


class AvailabilityQuotaExhausted(QuotaExhausted):
    def __init__(self):
        super().__init__(
            QUOTA_MESSAGE,
            headers={"Retry-After": "3600"},
            extra={"available": False, "reason": QUOTA_MESSAGE},
        )


class LinesBusy(ServiceError):
    """Every line with quota is inside its gap. Background work re-schedules on this."""

    status = 503
    code = "LINES_BUSY"

    def __init__(self, retry_after: float):
        seconds = max(1, int(retry_after + 0.999))
        super().__init__("Every line is busy; retry shortly", headers={"Retry-After": str(seconds)})
        self.retry_after = retry_after


@dataclass(frozen=True)
class AddressResult:
    address: str
    available: bool | None
    status: str  # available | unavailable | error
    from_cache: bool
    line_id: str | None
    detail: str = ""


@dataclass(frozen=True)
class LeadResult:
    lead_id: str
    available: bool | None
    status: str
    address: str
    checked_addresses: tuple[str, ...] = ()


@dataclass
class BatchResult:
    """What a batch did. `stopped` is the error that halted it before the end (the
    leads not in `results` were left untouched), or None."""

    results: list[LeadResult] = field(default_factory=list)
    stopped: ServiceError | None = None


class _Clock:
    """`now` for the engine: the caller's fixed time advanced by what we slept, or
    the real time. Tests pass `now` and replace `_sleep`."""

    def __init__(self, now: datetime | None):
        self.fixed = now
        self.slept = 0.0

    def now(self) -> datetime:
        if self.fixed is None:
            return timezone.now()
        return self.fixed + timedelta(seconds=self.slept)

    def sleep(self, seconds: float) -> None:
        _sleep(seconds)
        self.slept += seconds


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


# Addresses


def normalize_address(raw) -> str:
    """E.164 for a phone, lowercased for an email; ValidationFailed for anything else."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationFailed("address: A phone number or email address is required")
    value = raw.strip()
    try:
        if "@" in value:
            return normalize_email(value)
        return normalize_phone(value, DEFAULT_REGION)
    except InvalidIdentifier:
        kind = "email address" if "@" in value else "phone number"
        raise ValidationFailed(f"address: {value!r} is not a valid {kind}") from None


def lead_addresses(lead: Lead) -> list[str]:
    """The lead's addresses in check order (phone, email, alt phones, alt emails)."""
    seen = []
    for name in AVAILABILITY_ORDER:
        value = getattr(lead, name)
        if not value:
            continue
        try:
            address = normalize_address(value)
        except ValidationFailed:
            continue
        if address not in seen:
            seen.append(address)
    return seen


# Cache


def cache_lookup(*, workspace, addresses: Iterable[str], now: datetime) -> dict[str, bool]:
    addresses = list(dict.fromkeys(addresses))
    found = {}
    for start in range(0, len(addresses), 1000):
        rows = AvailabilityCacheEntry.objects.filter(
            workspace=workspace, address__in=addresses[start : start + 1000], expires_at__gt=now
        ).values_list("address", "available")
        found.update(rows)
    return found


def cache_store(
    *, workspace, address: str, available: bool, line_id: str | None, now: datetime
) -> None:
    cache_store_many(
        workspace=workspace,
        answers=[AddressResult(address, available, "", False, line_id)],
        now=now,
    )


def cache_store_many(*, workspace, answers: Sequence[AddressResult], now: datetime) -> None:
    """Upsert relay answers (a repeat of an address keeps the last one)."""
    positive = timedelta(seconds=settings.AVAILABILITY_CACHE_SECONDS)
    negative = timedelta(seconds=settings.AVAILABILITY_NEGATIVE_CACHE_SECONDS)
    latest = {answer.address: answer for answer in answers if answer.available is not None}
    if not latest:
        return
    AvailabilityCacheEntry.objects.bulk_create(
        [
            AvailabilityCacheEntry(
                workspace=workspace,
                address=answer.address,
                available=answer.available,
                checked_at=now,
                expires_at=now + (positive if answer.available else negative),
                line_id=answer.line_id,
            )
            for answer in latest.values()
        ],
        update_conflicts=True,
        unique_fields=["workspace", "address"],
        update_fields=["available", "checked_at", "expires_at", "line"],
    )


def cache_purge_expired(*, now: datetime | None = None) -> int:
    deleted, _ = AvailabilityCacheEntry.objects.filter(
        expires_at__lte=now or timezone.now()
    ).delete()
    return deleted


# One address


def availability_check_address(
    *,
    workspace,
    address: str,
    force: bool = False,
    line: Line | None = None,
    now: datetime | None = None,
    wait: bool = True,
) -> AddressResult:
    """Is `address` on iMessage? From the cache unless `force`, else from a line's relay.

    Raises NoActiveLine, AvailabilityQuotaExhausted, or LinesBusy (only when
    `wait` is False, or the wait would be too long). A relay failure is not an
    exception: it is a result with status "error". Not for use inside a
    transaction: it may wait for a line's gap and then talk to a relay.
    """
    address = normalize_address(address)
    clock = _Clock(now)
    if not force:
        cached = cache_lookup(workspace=workspace, addresses=[address], now=clock.now())
        if address in cached:
            return _cached_result(address, cached[address])
    return _relay_check(workspace=workspace, address=address, line=line, clock=clock, wait=wait)


def _cached_result(address: str, available: bool) -> AddressResult:
    status = Status.AVAILABLE if available else Status.UNAVAILABLE
    return AddressResult(address, available, str(status), True, None)


def _claim_line(*, workspace, line: Line | None, clock: _Clock, wait: bool) -> Line | None:
    """A line holding one check slot, or None when every line is down."""
    while True:
        pick = line_services.line_pick_for_check(
            workspace=workspace, now=clock.now(), line_id=line.pk if line else None
        )
        if pick.line is not None:
            return pick.line
        if pick.reason == line_services.NO_ACTIVE_LINE:
            raise NoActiveLine()
        if pick.reason == line_services.ALL_DOWN:
            return None
        if pick.reason == line_services.QUOTA_EXHAUSTED:
            raise AvailabilityQuotaExhausted()
        if not wait or clock.slept + pick.retry_after > MAX_SYNC_WAIT_SECONDS:
            raise LinesBusy(pick.retry_after)
        clock.sleep(pick.retry_after)


def _relay_check(
    *, workspace, address: str, line: Line | None, clock: _Clock, wait: bool, store: bool = True
) -> AddressResult:
    line = _claim_line(workspace=workspace, line=line, clock=clock, wait=wait)
    if line is None:
        return AddressResult(address, None, str(Status.ERROR), False, None, "Every line is down")
    now = clock.now()
    try:
        available = get_client(line).check(address)
    except RelayError as exc:
        if not exc.reached:
            line_services.usage_release(line=line, kind="availability_checks", now=now)
        if line_services.relay_failure_is_line_fault(exc):
            line_services.line_record_failure(line=line, detail=exc.message, now=now)
        else:  # the relay answered, about this address only
            line_services.line_record_success(line=line, now=now, detail="Relay answering")
        logger.warning("Availability check of %s on line %s failed: %s", address, line.pk, exc)
        return AddressResult(address, None, str(Status.ERROR), False, line.pk, exc.message)
    line_services.line_record_success(line=line, now=now, detail="Answered an availability check")
    if store:
        cache_store(
            workspace=workspace, address=address, available=available, line_id=line.pk, now=now
        )
    status = Status.AVAILABLE if available else Status.UNAVAILABLE
    return AddressResult(address, available, str(status), False, line.pk)


# Leads


def availability_check_lead(
    *, workspace, lead: Lead, force: bool = False, now: datetime | None = None, wait: bool = True
) -> LeadResult:
    """Check one lead (addresses in order, first available wins) and record the result.

    With no active line the lead is marked `no_active_line` and NoActiveLine is raised;
    out of quota raises AvailabilityQuotaExhausted and leaves the lead as it was.
    """
    batch = availability_check_leads(
        workspace=workspace, leads=[lead], force=force, now=now, wait=wait
    )
    if batch.stopped is not None:
        raise batch.stopped
    return batch.results[0]


def availability_check_leads(
    *,
    workspace,
    leads: Sequence[Lead],
    force: bool = False,
    now: datetime | None = None,
    wait: bool = True,
    flush_every: int = 500,
) -> BatchResult:
    """Check leads in order and write each result to its lead.

    Answers from the cache cost one query for the whole batch and are written in
    bulk; leads that need a relay are written as soon as they are known. Stops at
    the first NoActiveLine (every remaining lead is marked `no_active_line`),
    quota exhaustion or LinesBusy, which is returned in `stopped`.
    """
    clock = _Clock(now)
    batch = BatchResult()
    addresses = {lead.pk: lead_addresses(lead) for lead in leads}
    cached = {}
    if not force:
        cached = cache_lookup(
            workspace=workspace,
            addresses=[a for values in addresses.values() for a in values],
            now=clock.now(),
        )
    pending: list[LeadResult] = []
    answers: list[AddressResult] = []
    for index, lead in enumerate(leads):
        try:
            result, fresh = _resolve_lead(
                workspace=workspace,
                lead=lead,
                addresses=addresses[lead.pk],
                cached=cached,
                clock=clock,
                wait=wait,
            )
        except NoActiveLine as exc:
            pending.extend(
                LeadResult(other.pk, None, str(Status.NO_ACTIVE_LINE), "")
                for other in leads[index:]
            )
            batch.stopped = exc
            break
        except (AvailabilityQuotaExhausted, LinesBusy) as exc:
            batch.stopped = exc
            break
        pending.append(result)
        answers.extend(fresh)
        if fresh or len(pending) >= flush_every:
            _record(workspace=workspace, results=pending, answers=answers, now=clock.now())
            batch.results.extend(pending)
            pending, answers = [], []
    if pending or answers:
        _record(workspace=workspace, results=pending, answers=answers, now=clock.now())
        batch.results.extend(pending)
    return batch


def _resolve_lead(
    *, workspace, lead: Lead, addresses: list[str], cached: dict, clock: _Clock, wait: bool
) -> tuple[LeadResult, list[AddressResult]]:
    """The lead's outcome, and the relay answers got on the way (to be cached)."""
    checked = []
    errors = []
    fresh = []
    for address in addresses:
        if address in cached:
            result = _cached_result(address, cached[address])
        else:
            result = _relay_check(
                workspace=workspace, address=address, line=None, clock=clock, wait=wait, store=False
            )
            fresh.append(result)
        checked.append(address)
        if result.available:
            outcome = LeadResult(lead.pk, True, str(Status.AVAILABLE), address, tuple(checked))
            return outcome, fresh
        if result.status == Status.ERROR:
            errors.append(address)
    if errors:
        outcome = LeadResult(lead.pk, None, str(Status.ERROR), errors[-1], tuple(checked))
    else:
        last = checked[-1] if checked else ""
        outcome = LeadResult(lead.pk, False, str(Status.UNAVAILABLE), last, tuple(checked))
    return outcome, fresh


def _record(
    *,
    workspace,
    results: list[LeadResult],
    now: datetime,
    answers: Sequence[AddressResult] = (),
) -> None:
    """Write relay answers to the cache and results to their leads, and announce the
    results, in one transaction (one commit for the lot)."""
    if not results and not answers:
        return
    with transaction.atomic():
        cache_store_many(workspace=workspace, answers=answers, now=now)
        if results:
            _write_lead_statuses(workspace=workspace, results=results, now=now)
            lead_availability_updated.send(sender=Lead, workspace=workspace, results=list(results))


def _write_lead_statuses(*, workspace, results: Sequence[LeadResult], now: datetime) -> None:
    """One statement for the batch on Postgres (arrays joined by id); pipelined
    single-row updates elsewhere. Django's bulk_update builds a CASE per field and
    row, which costs more Python time than the update itself."""
    table = connection.ops.quote_name(Lead._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} AS l SET availability_status = v.status, "  # noqa: S608
                "availability_checked_at = %s, availability_address = v.address "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) AS v(id, status, address) "
                "WHERE l.id = v.id AND l.workspace_id = %s",
                [
                    now,
                    [r.lead_id for r in results],
                    [r.status for r in results],
                    [r.address for r in results],
                    workspace.pk,
                ],
            )
            return
        stamp = connection.ops.adapt_datetimefield_value(now)
        cursor.executemany(
            f"UPDATE {table} SET availability_status = %s, availability_checked_at = %s, "  # noqa: S608
            "availability_address = %s WHERE id = %s AND workspace_id = %s",
            [(r.status, stamp, r.address, r.lead_id, workspace.pk) for r in results],
        )


def availability_mark_leads(*, workspace, lead_ids: Sequence[str], status: str) -> int:
    """Set a status without checking (`checking` when queued, `no_active_line`)."""
    with transaction.atomic():
        updated = Lead.objects.filter(workspace=workspace, pk__in=list(lead_ids)).update(
            availability_status=status
        )
        if status != Status.CHECKING:
            results = [LeadResult(lead_id, None, status, "") for lead_id in lead_ids]
            lead_availability_updated.send(sender=Lead, workspace=workspace, results=results)
    return updated


def workspace_has_active_line(*, workspace) -> bool:
    return Line.objects.filter(workspace=workspace, is_active=True).exists()


# Background jobs

JOB_LEASE_SECONDS = 300
JOB_CHUNK = 25
# A task gives its worker back after this long and re-queues itself.
JOB_TASK_BUDGET_SECONDS = 20.0


def availability_job_create(
    *, workspace, lead_ids: Sequence[str], force: bool = False, source: str = "manual"
) -> AvailabilityJob:
    """Queue a background check of these leads (marked `checking` until done)."""
    lead_ids = list(dict.fromkeys(lead_ids))
    with transaction.atomic():
        job = AvailabilityJob.objects.create(
            workspace=workspace, lead_ids=lead_ids, total=len(lead_ids), force=force, source=source
        )
        availability_mark_leads(workspace=workspace, lead_ids=lead_ids, status=Status.CHECKING)
        transaction.on_commit(lambda: _queue_job(job.pk))
    return job


def _queue_job(job_id: str, countdown: float = 0) -> None:
    from leads.tasks import availability_job_run

    availability_job_run.apply_async((job_id,), countdown=max(0, countdown))


def availability_job_cancel(*, workspace, job_id: str, now: datetime | None = None) -> bool:
    """Stop a job; its unchecked leads go back to "not checked". False if already over."""
    now = now or timezone.now()
    with transaction.atomic():
        job = (
            AvailabilityJob.objects.select_for_update()
            .filter(workspace=workspace, pk=job_id)
            .first()
        )
        if job is None or job.status in AvailabilityJob.FINAL:
            return False
        job.status = AvailabilityJob.Status.CANCELLED
        job.finished_at = now
        job.save(update_fields=["status", "finished_at"])
        remaining = job.lead_ids[job.cursor :]
        Lead.objects.filter(
            workspace=workspace, pk__in=remaining, availability_status=Status.CHECKING
        ).update(availability_status="")
    return True


def availability_job_process(
    *, job_id: str, now: datetime | None = None, budget_seconds: float = JOB_TASK_BUDGET_SECONDS
) -> float | None:
    """Work on a job for up to `budget_seconds`, one line slot at a time.

    Returns the countdown after which the job should run again, or None when it
    needs no re-queue (finished, cancelled, waiting for tomorrow's quota, or held by
    another task). Never sleeps for a line's gap: it returns that gap instead.
    """
    started = time.monotonic()
    clock_now = now or timezone.now()
    claimed = (
        AvailabilityJob.objects.filter(
            pk=job_id,
            status__in=[
                AvailabilityJob.Status.QUEUED,
                AvailabilityJob.Status.RUNNING,
                AvailabilityJob.Status.WAITING_QUOTA,
            ],
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=clock_now))
        .update(
            status=AvailabilityJob.Status.RUNNING,
            lease_until=clock_now + timedelta(seconds=JOB_LEASE_SECONDS),
            resume_at=None,
        )
    )
    if not claimed:
        return None
    job = AvailabilityJob.objects.select_related("workspace").get(pk=job_id)
    if job.started_at is None:
        AvailabilityJob.objects.filter(pk=job_id).update(started_at=clock_now)
    workspace = job.workspace
    while True:
        current = now  # a caller's fixed clock stays fixed; otherwise the real time
        ids = job.lead_ids[job.cursor : job.cursor + JOB_CHUNK]
        if not ids:
            _job_finish(job, AvailabilityJob.Status.DONE, now=current)
            return None
        by_id = Lead.objects.filter(workspace=workspace, pk__in=ids).in_bulk()
        leads = [by_id[lead_id] for lead_id in ids if lead_id in by_id]
        batch = availability_check_leads(
            workspace=workspace, leads=leads, force=job.force, now=current, wait=False
        )
        processed = {result.lead_id for result in batch.results}
        advanced = len(ids)
        if batch.stopped is not None and not isinstance(batch.stopped, NoActiveLine):
            # Leads before the first unprocessed one are done (deleted ones included).
            advanced = next(
                (
                    i
                    for i, lead_id in enumerate(ids)
                    if lead_id in by_id and lead_id not in processed
                ),
                len(ids),
            )
        if not _job_progress(job, advanced=advanced, results=batch.results):
            return None  # cancelled meanwhile
        stopped = batch.stopped
        if isinstance(stopped, NoActiveLine):
            rest = job.lead_ids[job.cursor :]
            availability_mark_leads(
                workspace=workspace, lead_ids=rest, status=Status.NO_ACTIVE_LINE
            )
            marked = [LeadResult(lead_id, None, str(Status.NO_ACTIVE_LINE), "") for lead_id in rest]
            _job_progress(job, advanced=len(rest), results=marked)
            _job_finish(job, AvailabilityJob.Status.FAILED, now=current, detail=stopped.message)
            return None
        if isinstance(stopped, AvailabilityQuotaExhausted):
            resume = line_services.next_utc_midnight(current)
            AvailabilityJob.objects.filter(pk=job.pk, status=AvailabilityJob.Status.RUNNING).update(
                status=AvailabilityJob.Status.WAITING_QUOTA,
                resume_at=resume,
                lease_until=None,
                detail=QUOTA_MESSAGE,
            )
            return None
        if isinstance(stopped, LinesBusy):
            _job_release(job)
            return stopped.retry_after
        if time.monotonic() - started > budget_seconds:
            _job_release(job)
            return 0


def _job_progress(job: AvailabilityJob, *, advanced: int, results: list[LeadResult]) -> bool:
    successful = sum(1 for r in results if r.status in (Status.AVAILABLE, Status.UNAVAILABLE))
    errors = sum(1 for r in results if r.status in (Status.ERROR, Status.NO_ACTIVE_LINE))
    job.cursor += advanced
    job.done += advanced
    job.successful += successful
    job.errors += errors
    updated = AvailabilityJob.objects.filter(
        pk=job.pk, status=AvailabilityJob.Status.RUNNING
    ).update(cursor=job.cursor, done=job.done, successful=job.successful, errors=job.errors)
    return bool(updated)


def _job_release(job: AvailabilityJob) -> None:
    AvailabilityJob.objects.filter(pk=job.pk).update(lease_until=None)


def _job_finish(
    job: AvailabilityJob, status: str, *, now: datetime | None, detail: str = ""
) -> None:
    AvailabilityJob.objects.filter(pk=job.pk, status=AvailabilityJob.Status.RUNNING).update(
        status=status, finished_at=now or timezone.now(), lease_until=None, detail=detail[:500]
    )


def availability_jobs_resume(*, now: datetime | None = None) -> list[str]:
    """Re-queue jobs waiting for quota whose new UTC day has come, and jobs whose
    task died (lease expired while running)."""
    now = now or timezone.now()
    due = list(
        AvailabilityJob.objects.filter(
            Q(status=AvailabilityJob.Status.WAITING_QUOTA, resume_at__lte=now)
            | Q(status=AvailabilityJob.Status.RUNNING, lease_until__lt=now)
            | Q(status=AvailabilityJob.Status.QUEUED, created_at__lt=now - timedelta(minutes=5))
        ).values_list("pk", flat=True)
    )
    for job_id in due:
        _queue_job(job_id)
    return due


def availability_queue_new_leads(*, workspace, lead_ids: Sequence[str]) -> AvailabilityJob | None:
    """Automatic check of newly created leads, within the lines' quota."""
    lead_ids = list(lead_ids)
    if not lead_ids:
        return None
    if not workspace_has_active_line(workspace=workspace):
        availability_mark_leads(
            workspace=workspace, lead_ids=lead_ids, status=Status.NO_ACTIVE_LINE
        )
        return None
    return availability_job_create(workspace=workspace, lead_ids=lead_ids, source="import")


def on_leads_created(sender, workspace, lead_ids, **kwargs):
    """Receiver of leads.signals.leads_created (sent on commit): check them in the
    background."""
    availability_queue_new_leads(workspace=workspace, lead_ids=lead_ids)
