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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from leads.models import AVAILABILITY_ORDER, AvailabilityCacheEntry, AvailabilityJob, Lead
from leads.normalize import InvalidIdentifier, default_region, normalize_email, normalize_phone
from leads.signals import lead_availability_updated
from lines import services as line_services
from lines.models import Line
from lines.relay import RelayError, check_many, get_client
from tuco.errors import QuotaExhausted, ServiceError, ValidationFailed

logger = logging.getLogger(__name__)

Status = Lead.Availability
QUOTA_MESSAGE = "Daily availability check quota exhausted"
# The synchronous path waits for a line's gap, but not for ever: one request waits
# at most this long in total. What it could not check in that time is reported per
# item (availability_check_addresses, availability_check_leads_now), or raised as
# LinesBusy by the single-address call.
MAX_SYNC_WAIT_SECONDS = 30.0


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


class Interrupted(ServiceError):
    """A batch's checkpoint asked it to stop (a job lost its lease or used its time)."""

    status = 503
    code = "INTERRUPTED"

    def __init__(self):
        super().__init__("The check was interrupted; it will resume")


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
    code: str = ""  # set on a result that was not asked at all (LINES_BUSY, QUOTA_EXHAUSTED)


@dataclass(frozen=True)
class LeadResult:
    lead_id: str
    available: bool | None
    status: str
    address: str
    checked_addresses: tuple[str, ...] = ()
    code: str = ""  # as AddressResult.code: not checked, and not written to the lead
    detail: str = ""


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

    def moment(self) -> datetime | None:
        """The caller's fixed time (advanced by what we slept), or None for "now"."""
        return None if self.fixed is None else self.now()

    def sleep(self, seconds: float) -> None:
        _sleep(seconds)
        self.slept += seconds


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


# Addresses


def normalize_address(raw) -> str:
    """E.164 for a phone, lowercased for an email; ValidationFailed for anything else."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationFailed("A phone number or email address is required", field="address")
    value = raw.strip()
    try:
        if "@" in value:
            return normalize_email(value)
        return normalize_phone(value, default_region())
    except InvalidIdentifier:
        kind = "email address" if "@" in value else "phone number"
        raise ValidationFailed(f"{value!r} is not a valid {kind}", field="address") from None


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


def cache_lookup(
    *,
    workspace,
    addresses: Iterable[str],
    now: datetime,
    checked_since: datetime | None = None,
) -> dict[str, bool]:
    """Fresh answers by address; with `checked_since`, only answers got since then."""
    found = cache_lookup_many(
        addresses={workspace.pk: addresses}, now=now, checked_since=checked_since
    )
    return {address: available for (_, address), available in found.items()}


def cache_lookup_many(
    *,
    addresses: dict[str, Iterable[str]],
    now: datetime,
    checked_since: datetime | None = None,
) -> dict:
    """Fresh answers of several workspaces at once: {(workspace id, address): available}
    for the addresses given per workspace id; with `checked_since`, only answers got
    since then."""
    wanted = {(w, a) for w, values in addresses.items() for a in values}
    values = sorted({a for _, a in wanted})
    found = {}
    for start in range(0, len(values), 1000):
        rows = AvailabilityCacheEntry.objects.filter(
            workspace_id__in=sorted(addresses),
            address__in=values[start : start + 1000],
            expires_at__gt=now,
        )
        if checked_since is not None:
            rows = rows.filter(checked_at__gte=checked_since)
        found.update(
            ((w, a), available)
            for w, a, available in rows.values_list("workspace_id", "address", "available")
            if (w, a) in wanted
        )
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
            return cached_answer(address, cached[address])
    return _relay_check(workspace=workspace, address=address, line=line, clock=clock, wait=wait)


def availability_check_addresses(
    *,
    workspace,
    addresses: Sequence[str],
    force: bool = False,
    now: datetime | None = None,
    stop_at_available: bool = False,
) -> list[AddressResult]:
    """Check several addresses in order under one wait budget (MAX_SYNC_WAIT_SECONDS
    for the lot), for the synchronous endpoints.

    Cached answers come from one query; the others from the relays, each answer
    cached as it arrives. Once every line stays busy past the budget, or the quota
    runs out, the addresses not asked yet are results with status "error" and `code`
    LINES_BUSY or QUOTA_EXHAUSTED, so answers already paid for are returned rather
    than thrown away. Raises ValidationFailed, NoActiveLine, and
    AvailabilityQuotaExhausted when the quota left no address answered.
    """
    addresses = list(dict.fromkeys(normalize_address(raw) for raw in addresses))
    clock = _Clock(now)
    cached = {}
    if not force:
        cached = cache_lookup(workspace=workspace, addresses=addresses, now=clock.now())
    results = []
    stopped: AvailabilityQuotaExhausted | LinesBusy | None = None
    for address in addresses:
        if address in cached:
            result = cached_answer(address, cached[address])
        elif stopped is not None:
            result = _not_checked(address, stopped)
        else:
            try:
                result = _relay_check(
                    workspace=workspace, address=address, line=None, clock=clock, wait=True
                )
            except (AvailabilityQuotaExhausted, LinesBusy) as exc:
                stopped = exc
                result = _not_checked(address, exc)
        results.append(result)
        if stop_at_available and result.available:
            break
    if isinstance(stopped, AvailabilityQuotaExhausted) and all(r.code for r in results):
        raise stopped
    return results


def _not_checked(address: str, exc: ServiceError) -> AddressResult:
    detail = _not_checked_detail(exc)
    return AddressResult(address, None, str(Status.ERROR), False, None, detail, exc.code)


def _not_checked_detail(exc: ServiceError) -> str:
    if isinstance(exc, LinesBusy):
        return "Not checked: every line stayed busy; retry shortly"
    return f"Not checked: {exc}"


def cached_answer(address: str, available: bool) -> AddressResult:
    """The result for a (normalized) address whose fresh answer was read from the cache."""
    status = Status.AVAILABLE if available else Status.UNAVAILABLE
    return AddressResult(address, available, str(status), True, None)


def _claim_line(*, workspace, line: Line | None, clock: _Clock, wait: bool) -> Line | None:
    """A line holding one check slot, or None when every line is down."""
    lines = _claim_slots(workspace=workspace, count=1, line=line, clock=clock, wait=wait)
    return lines[0] if lines else None


def _claim_slots(
    *, workspace, count: int, clock: _Clock, wait: bool, line: Line | None = None
) -> list[Line]:
    """Lines holding between 1 and `count` check slots (a line once per slot), or []
    when every line is down. One slot is a line_pick_for_check (optionally on `line`);
    several are one line_reserve_checks.

    Raises NoActiveLine, AvailabilityQuotaExhausted, or LinesBusy (when `wait` is
    False or the wait would pass MAX_SYNC_WAIT_SECONDS); otherwise sleeps for the gap.
    """
    while True:
        # A real clock leaves the gaps to the database's clock (shared by all workers).
        if count == 1:
            pick = line_services.line_pick_for_check(
                workspace=workspace, now=clock.moment(), line_id=line.pk if line else None
            )
            slots = [(pick.line, 1)] if pick.line is not None else []
        else:
            pick = line_services.line_reserve_checks(
                workspace=workspace, count=count, now=clock.moment()
            )
            slots = pick.slots
        if slots:
            return [claimed for claimed, taken in slots for _ in range(taken)]
        if pick.reason == line_services.NO_ACTIVE_LINE:
            raise NoActiveLine()
        if pick.reason == line_services.ALL_DOWN:
            return []
        if pick.reason == line_services.QUOTA_EXHAUSTED:
            raise AvailabilityQuotaExhausted()
        if not wait or clock.slept + pick.retry_after > MAX_SYNC_WAIT_SECONDS:
            raise LinesBusy(pick.retry_after)
        clock.sleep(pick.retry_after)


def _relay_check(
    *, workspace, address: str, line: Line | None, clock: _Clock, wait: bool
) -> AddressResult:
    line = _claim_line(workspace=workspace, line=line, clock=clock, wait=wait)
    if line is None:
        return _all_down(address)
    now = clock.now()
    (result,) = _ask_relays([(line, address)], now=now)
    if result.available is not None:
        cache_store(
            workspace=workspace,
            address=address,
            available=result.available,
            line_id=line.pk,
            now=now,
        )
    return result


def _all_down(address: str) -> AddressResult:
    return AddressResult(address, None, str(Status.ERROR), False, None, "Every line is down")


def _ask_relays(
    requests: Sequence[tuple[Line, str]],
    *,
    now: datetime,
    while_waiting: Callable[[], None] | None = None,
) -> list[AddressResult]:
    """Send claimed checks (line, address) to their relays, all at once, and record
    what that says about each line. A slot whose request never reached the relay is
    given back. A relay failure is a result with status "error". `while_waiting`
    runs in this thread while the requests are out."""
    outcomes = check_many(
        [(get_client(line), address) for line, address in requests], while_waiting=while_waiting
    )
    unreached: dict[str, tuple[Line, int]] = {}
    results = []
    for (line, address), outcome in zip(requests, outcomes, strict=True):
        if not isinstance(outcome, RelayError):
            line_services.line_record_success(
                line=line, now=now, detail="Answered an availability check"
            )
            status = Status.AVAILABLE if outcome else Status.UNAVAILABLE
            results.append(AddressResult(address, outcome, str(status), False, line.pk))
            continue
        if not outcome.reached:
            unreached[line.pk] = (line, unreached.get(line.pk, (line, 0))[1] + 1)
        if line_services.relay_failure_is_line_fault(outcome):
            line_services.line_record_failure(line=line, detail=outcome.message, now=now)
        else:  # the relay answered, about this address only
            line_services.line_record_success(line=line, now=now, detail="Relay answering")
        logger.warning("Availability check of %s on line %s failed: %s", address, line.pk, outcome)
        results.append(
            AddressResult(address, None, str(Status.ERROR), False, line.pk, outcome.message)
        )
    for line, count in unreached.values():
        line_services.usage_release(line=line, kind="availability_checks", now=now, amount=count)
    return results


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


def availability_check_leads_now(
    *, workspace, leads: Sequence[Lead], force: bool = False, now: datetime | None = None
) -> list[LeadResult]:
    """The synchronous path: check these leads (one wait budget for all) and record
    the results.

    A lead that could not be finished because every line stayed busy past the
    budget, or the quota ran out, is a result with status "error" and `code`
    LINES_BUSY or QUOTA_EXHAUSTED; it is not written, so the lead keeps its earlier
    status (and what was asked about it is cached). Raises NoActiveLine (the leads
    are marked `no_active_line`), and AvailabilityQuotaExhausted when the quota left
    no lead checked.
    """
    batch = availability_check_leads(workspace=workspace, leads=leads, force=force, now=now)
    stopped = batch.stopped
    if stopped is None:
        return batch.results
    if isinstance(stopped, NoActiveLine) or (
        isinstance(stopped, AvailabilityQuotaExhausted) and not batch.results
    ):
        raise stopped
    detail = _not_checked_detail(stopped)
    done = {result.lead_id for result in batch.results}
    return batch.results + [
        LeadResult(lead.pk, None, str(Status.ERROR), "", code=stopped.code, detail=detail)
        for lead in leads
        if lead.pk not in done
    ]


def availability_check_leads(
    *,
    workspace,
    leads: Sequence[Lead],
    force: bool = False,
    now: datetime | None = None,
    wait: bool = True,
    fresh_since: datetime | None = None,
    checkpoint: Callable[[list[LeadResult]], bool] | None = None,
    concurrency: int = 1,
) -> BatchResult:
    """Check leads in order and write each result to its lead.

    Answers from the cache cost one query for the whole batch and are written in
    bulk; leads that need a relay are written as soon as they are known, in lead
    order. Stops at the first NoActiveLine (every remaining lead is marked
    `no_active_line`), quota exhaustion, LinesBusy or Interrupted, which is returned
    in `stopped`; `results` then holds the leads before the first unfinished one.

    Relay requests go out in rounds: each unfinished lead asks its next address
    (its addresses stay in order, and it stops at the first available one), the
    slots of a round are claimed together, and the requests of a round are sent at
    once. The first round asks for one lead; each next round for twice as many, up
    to `concurrency` (1: one request at a time). A round's answers and finished
    leads are written (in one transaction) while the next round's requests are out,
    and at the end, however the batch ends, so a batch stopped halfway through a
    lead (gap, quota) never pays for the same address again. `force` ignores cached
    answers, except those got since `fresh_since` (a forced job trusts what it has
    asked itself). `checkpoint`, when given, is called before every round with the
    results written since its previous call; when it returns False the batch stops
    with Interrupted.
    """
    clock = _Clock(now)
    batch = BatchResult()
    progress = [_LeadProgress(lead, lead_addresses(lead)) for lead in leads]
    cached = {}
    if not force or fresh_since is not None:
        cached = cache_lookup(
            workspace=workspace,
            addresses=[a for item in progress for a in item.addresses],
            now=clock.now(),
            checked_since=fresh_since if force else None,
        )
    for item in progress:
        item.advance(cached)
    pending: list[LeadResult] = []
    answers: list[AddressResult] = []
    reported = 0
    first = 0  # the first lead not yet moved to `pending`

    def flush() -> None:
        if pending or answers:
            _record(workspace=workspace, results=pending, answers=answers, now=clock.now())
            batch.results.extend(pending)
            pending.clear()
            answers.clear()

    size = 1
    while True:
        while first < len(progress) and progress[first].result is not None:
            pending.append(progress[first].result)
            first += 1
        if first == len(progress):
            break
        round_ = _next_round(progress, first, size)
        try:
            if checkpoint is not None:
                written, reported = batch.results[reported:], len(batch.results)
                if not checkpoint(written):
                    raise Interrupted()
            lines = _claim_slots(workspace=workspace, count=len(round_), clock=clock, wait=wait)
        except NoActiveLine as exc:
            pending.extend(
                LeadResult(item.lead.pk, None, str(Status.NO_ACTIVE_LINE), "")
                for item in progress[first:]
            )
            batch.stopped = exc
            break
        except (AvailabilityQuotaExhausted, LinesBusy, Interrupted) as exc:
            batch.stopped = exc
            break
        if lines:
            round_ = round_[: len(lines)]
            # What the previous round found is written while this round's requests are out.
            results = _ask_relays(
                [(line, item.address) for line, item in zip(lines, round_, strict=False)],
                now=clock.now(),
                while_waiting=flush,
            )
        else:
            flush()
            results = [_all_down(item.address) for item in round_]
        for item, result in zip(round_, results, strict=True):
            if result.available is not None:
                answers.append(result)
                cached[result.address] = result.available
            item.answered(result, cached)
        for item in progress[first:]:
            item.advance(cached)  # another lead may just have had its next address answered
        size = min(size * 2, max(1, concurrency))
    flush()
    return batch


def _next_round(progress: list[_LeadProgress], first: int, size: int) -> list[_LeadProgress]:
    """Up to `size` unfinished leads from `first` on, each asking a different address
    (a lead whose address is already asked waits for the answer in the cache)."""
    round_, asked = [], set()
    for item in progress[first:]:
        if len(round_) >= size:
            break
        if item.result is None and item.address not in asked:
            asked.add(item.address)
            round_.append(item)
    return round_


class _LeadProgress:
    """One lead on its way through its addresses (in order, first available wins)."""

    def __init__(self, lead: Lead, addresses: list[str]):
        self.lead = lead
        self.addresses = addresses
        self.position = 0
        self.errors: list[str] = []
        self.result: LeadResult | None = None
        if not addresses:
            # Nothing could be asked: that says nothing about iMessage, so not "unavailable".
            self.result = LeadResult(lead.pk, None, str(Status.ERROR), "")

    @property
    def address(self) -> str:
        """The address to ask next."""
        return self.addresses[self.position]

    def advance(self, cached: dict) -> None:
        """Take cached answers until an address needs a relay, or the lead is done."""
        while self.result is None and self.address in cached:
            self.answered(cached_answer(self.address, cached[self.address]), cached)

    def answered(self, result: AddressResult, cached: dict) -> None:
        self.position += 1
        checked = tuple(self.addresses[: self.position])
        if result.available:
            self.result = LeadResult(
                self.lead.pk, True, str(Status.AVAILABLE), result.address, checked
            )
            return
        if result.status == Status.ERROR:
            self.errors.append(result.address)
        if self.position < len(self.addresses):
            self.advance(cached)
        elif self.errors:
            self.result = LeadResult(
                self.lead.pk, None, str(Status.ERROR), self.errors[-1], checked
            )
        else:
            self.result = LeadResult(
                self.lead.pk, False, str(Status.UNAVAILABLE), result.address, checked
            )


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
    """Single-row updates sent together (the driver pipelines them). Django's
    bulk_update builds a CASE per field and row, which costs more Python time than
    the update itself."""
    table = connection.ops.quote_name(Lead._meta.db_table)
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
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
JOB_CHUNK = 1000
# Relay requests a job sends at once (see availability_check_leads). Its turn starts
# with one, so a task that has lost its job, or a dead relay, costs one request.
JOB_CONCURRENCY = 256
# A task gives its worker back after this long and re-queues itself.
JOB_TASK_BUDGET_SECONDS = 20.0
# A job handed to a successor task (after a gap, or when a task's time is up) stays
# leased this long past the successor's due time. If the successor never runs (a lost
# message, a dead worker), the lease runs out and availability_jobs_resume re-queues it.
JOB_HANDOFF_MARGIN_SECONDS = 60
_ACTIVE_JOB = (
    AvailabilityJob.Status.QUEUED,
    AvailabilityJob.Status.RUNNING,
    AvailabilityJob.Status.WAITING_QUOTA,
)


def availability_job_create(
    *, workspace, lead_ids: Sequence[str], force: bool = False, source: str = "manual"
) -> AvailabilityJob:
    """Queue a background check of these leads (marked `checking` until done).

    With no active line nothing is queued: the leads are marked `no_active_line` and
    NoActiveLine is raised, as on the synchronous path.
    """
    lead_ids = list(dict.fromkeys(lead_ids))
    if not workspace_has_active_line(workspace=workspace):
        availability_mark_leads(
            workspace=workspace, lead_ids=lead_ids, status=Status.NO_ACTIVE_LINE
        )
        raise NoActiveLine()
    with transaction.atomic():
        job = AvailabilityJob.objects.create(
            workspace=workspace, lead_ids=lead_ids, total=len(lead_ids), force=force, source=source
        )
        availability_mark_leads(workspace=workspace, lead_ids=lead_ids, status=Status.CHECKING)
        transaction.on_commit(lambda: _queue_job(job.pk), robust=True)
    return job


def _queue_job(job_id: str, countdown: float = 0) -> None:
    from leads.tasks import availability_job_run

    availability_job_run.apply_async((job_id,), countdown=max(0, countdown))


def availability_job_cancel(*, workspace, job_id: str, now: datetime | None = None) -> bool:
    """Stop a job; its unchecked leads go back to "not checked". False if already over."""
    now = now or timezone.now()
    with transaction.atomic():
        job = (
            AvailabilityJob.objects.select_for_update(no_key=True)
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
    """Work on a job for up to `budget_seconds`, in rounds of line slots.

    Returns the countdown after which the job should run again, or None when it
    needs no re-queue (finished, cancelled, waiting for tomorrow's quota, or held by
    another task). Never sleeps for a line's gap: it returns that gap instead.
    """
    run = _JobRun.claim(job_id, now=now, budget_seconds=budget_seconds)
    return None if run is None else run.work()


class _JobRun:
    """One task's turn on a job.

    The lease (`lease_until`) is the task's token: the claim sets it, and every later
    write of this task is conditional on it still holding that exact value (and
    progress writes on the cursor too). A task whose lease ran out while it waited on
    a slow relay, and whose job another task has taken over, therefore stops at its
    next write instead of overwriting the other's progress. The lease is renewed
    before every round of relay requests, so a live task does not lose it.
    """

    def __init__(self, job: AvailabilityJob, *, lease: datetime, now, budget_seconds: float):
        self.job = job
        self.lease = lease
        self.fixed_now = now  # a caller's fixed clock stays fixed; otherwise the real time
        self.started = time.monotonic()
        self.budget_seconds = budget_seconds
        self.positions: dict[str, int] = {}
        self.counted = 0  # results of the current chunk already in the job's counters
        self.lost = False
        self.asked = 0  # rounds of relay requests this turn

    def now(self) -> datetime:
        return self.fixed_now or timezone.now()

    @classmethod
    def claim(cls, job_id: str, *, now: datetime | None, budget_seconds: float) -> _JobRun | None:
        clock_now = now or timezone.now()
        lease = clock_now + timedelta(seconds=JOB_LEASE_SECONDS)
        claimed = (
            AvailabilityJob.objects.filter(pk=job_id, status__in=_ACTIVE_JOB)
            .filter(
                Q(lease_until__isnull=True)
                | Q(lease_until__lt=clock_now)
                # Handed off by the previous task (see _hand_off): any task may take it.
                | Q(status=AvailabilityJob.Status.RUNNING, resume_at__isnull=False)
            )
            .update(status=AvailabilityJob.Status.RUNNING, lease_until=lease, resume_at=None)
        )
        if not claimed:
            return None
        job = AvailabilityJob.objects.select_related("workspace").get(pk=job_id)
        if job.started_at is None:
            AvailabilityJob.objects.filter(pk=job_id).update(started_at=clock_now)
            job.started_at = clock_now
        return cls(job, lease=lease, now=now, budget_seconds=budget_seconds)

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > self.budget_seconds

    def work(self) -> float | None:
        job = self.job
        while True:
            start = job.cursor
            ids = job.lead_ids[start : start + JOB_CHUNK]
            if not ids:
                self._finish(AvailabilityJob.Status.DONE)
                return None
            self.positions = {lead_id: start + i for i, lead_id in enumerate(ids)}
            self.counted = 0
            by_id = Lead.objects.filter(workspace=job.workspace, pk__in=ids).in_bulk()
            leads = [by_id[lead_id] for lead_id in ids if lead_id in by_id]
            batch = availability_check_leads(
                workspace=job.workspace,
                leads=leads,
                force=job.force,
                now=self.fixed_now,
                wait=False,
                fresh_since=job.started_at if job.force else None,
                checkpoint=self.checkpoint,
                concurrency=JOB_CONCURRENCY,
            )
            if self.lost:
                return None  # cancelled, or another task holds the job now
            stopped = batch.stopped
            end = start + len(ids)
            if stopped is not None and not isinstance(stopped, NoActiveLine):
                # Leads before the first unprocessed one are done (deleted ones included).
                processed = {result.lead_id for result in batch.results}
                end = start + next(
                    (
                        i
                        for i, lead_id in enumerate(ids)
                        if lead_id in by_id and lead_id not in processed
                    ),
                    len(ids),
                )
            if not self._progress(batch.results[self.counted :], cursor=end):
                return None
            if isinstance(stopped, NoActiveLine):
                rest = job.lead_ids[job.cursor :]
                availability_mark_leads(
                    workspace=job.workspace, lead_ids=rest, status=Status.NO_ACTIVE_LINE
                )
                marked = [
                    LeadResult(lead_id, None, str(Status.NO_ACTIVE_LINE), "") for lead_id in rest
                ]
                if self._progress(marked, cursor=job.cursor + len(rest)):
                    self._finish(AvailabilityJob.Status.FAILED, detail=stopped.message)
                return None
            if isinstance(stopped, AvailabilityQuotaExhausted):
                self._wait_for_quota()
                return None
            if isinstance(stopped, LinesBusy):
                return self._hand_off(stopped.retry_after)
            more = job.cursor < len(job.lead_ids)
            if isinstance(stopped, Interrupted) or (more and self.out_of_time()):
                return self._hand_off(0)

    def checkpoint(self, results: list[LeadResult]) -> bool:
        """Before a round of relay requests: record progress, renew the lease, mind the
        budget."""
        cursor = self.positions[results[-1].lead_id] + 1 if results else self.job.cursor
        if not self._progress(results, cursor=cursor):
            return False
        self.counted += len(results)
        # Every turn gets at least one request, so even a tiny budget makes progress.
        if self.asked and self.out_of_time():
            return False
        self.asked += 1
        return True

    def _held(self):
        return AvailabilityJob.objects.filter(
            pk=self.job.pk, status=AvailabilityJob.Status.RUNNING, lease_until=self.lease
        )

    def _progress(self, results: list[LeadResult], *, cursor: int) -> bool:
        job = self.job
        ok = (Status.AVAILABLE, Status.UNAVAILABLE)
        failed = (Status.ERROR, Status.NO_ACTIVE_LINE)
        successful = job.successful + sum(1 for r in results if r.status in ok)
        errors = job.errors + sum(1 for r in results if r.status in failed)
        done = job.done + (cursor - job.cursor)
        lease = self.now() + timedelta(seconds=JOB_LEASE_SECONDS)
        updated = (
            self._held()
            .filter(cursor=job.cursor)
            .update(
                cursor=cursor, done=done, successful=successful, errors=errors, lease_until=lease
            )
        )
        if not updated:
            self.lost = True
            return False
        job.cursor, job.done, job.successful, job.errors = cursor, done, successful, errors
        self.lease = lease
        return True

    def _hand_off(self, countdown: float) -> float | None:
        """Keep the job (status running) for the successor task due in `countdown`."""
        resume = self.now() + timedelta(seconds=max(0.0, countdown))
        updated = self._held().update(
            resume_at=resume,
            lease_until=resume + timedelta(seconds=JOB_HANDOFF_MARGIN_SECONDS),
        )
        return countdown if updated else None

    def _wait_for_quota(self) -> None:
        self._held().update(
            status=AvailabilityJob.Status.WAITING_QUOTA,
            resume_at=line_services.next_utc_midnight(self.now()),
            lease_until=None,
            detail=QUOTA_MESSAGE,
        )

    def _finish(self, status: str, *, detail: str = "") -> None:
        self._held().update(
            status=status, finished_at=self.now(), lease_until=None, detail=detail[:500]
        )


def availability_jobs_resume(*, now: datetime | None = None) -> list[str]:
    """Re-queue jobs waiting for quota whose new UTC day has come, and jobs whose
    task died (lease expired while running, including a hand-off nobody took)."""
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


def availability_jobs_wake(*, workspace_id: str) -> list[str]:
    """Re-queue the workspace's jobs waiting for quota: a line may have some now."""
    waiting = list(
        AvailabilityJob.objects.filter(
            workspace_id=workspace_id, status=AvailabilityJob.Status.WAITING_QUOTA
        ).values_list("pk", flat=True)
    )
    for job_id in waiting:
        _queue_job(job_id)
    return waiting


def availability_queue_new_leads(*, workspace, lead_ids: Sequence[str]) -> AvailabilityJob | None:
    """Automatic check of newly created leads, within the lines' quota."""
    lead_ids = list(lead_ids)
    if not lead_ids:
        return None
    try:
        return availability_job_create(workspace=workspace, lead_ids=lead_ids, source="import")
    except NoActiveLine:
        return None  # the leads are marked `no_active_line`


def on_leads_created(sender, workspace, lead_ids, check_availability=True, **kwargs):
    """Receiver of leads.signals.leads_created (sent on commit): check them in the
    background, unless their creator checks them itself."""
    if check_availability:
        availability_queue_new_leads(workspace=workspace, lead_ids=lead_ids)


def on_line_capacity_changed(sender, workspace_id, **kwargs):
    """Receiver of lines.signals.line_capacity_changed (sent on commit): a line was
    added, activated, became healthy or got a higher daily limit, so jobs waiting
    for tomorrow's quota may go on today."""
    availability_jobs_wake(workspace_id=workspace_id)


def availability_record_for_lead(
    *, workspace, lead: Lead, address: str, available: bool, checked: Sequence[str]
) -> bool:
    """Write an answer found outside the engine's lead checks (a send checks its
    recipient's addresses in the documented order) to the lead, and announce it.
    `address` is the address that answered (the available one, else the last
    checked). Nothing is written when the lead already says the same; returns
    whether it was written."""
    status = str(Status.AVAILABLE if available else Status.UNAVAILABLE)
    if (
        lead.availability_status == status
        and lead.availability_address == address
        and lead.availability_checked_at is not None
    ):
        return False
    result = LeadResult(lead.pk, available, status, address, tuple(checked))
    _record(workspace=workspace, results=[result], now=timezone.now())
    return True
