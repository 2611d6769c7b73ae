"""Writes for lines: create/update/delete, daily caps, gaps, round robin, health.

Caps and gaps are enforced by conditional UPDATEs in the database, never by a
read-then-write in Python, so they hold across threads, processes and machines.
Every function that depends on the time takes `now`, so callers (and tests)
control the clock. Without an explicit `now`, gaps are measured by the database's
clock (`Now()` inside the conditional UPDATE), so workers on machines whose clocks
disagree still keep them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypedDict, Unpack

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import DateTimeField, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from lines import safety, warmup
from lines.models import Line, LinePolicy, LineUsage
from lines.relay import RelayError, get_client, relay_host_check
from lines.signals import line_capacity_changed, line_deleted, line_saved
from lines.validators import clean_email, clean_phone, clean_server_url
from tuco.crypto import encrypt
from tuco.errors import Conflict, NotFound, ValidationFailed

logger = logging.getLogger(__name__)

# kind -> (counter column on LineUsage, limit column on Line)
USAGE_KINDS = {
    "availability_checks": ("availability_checks_count", "daily_availability_checks_limit"),
    "total_messages": ("total_messages_count", "daily_total_messages_limit"),
    "new_conversations": ("new_conversations_count", "daily_new_conversations_limit"),
}

EDITABLE_FIELDS = (
    "phone",
    "email",
    "first_name",
    "last_name",
    "server_url",
    "relay_password",
    "is_active",
    "provisioning_status",
    "line_type",
    "daily_new_conversations_limit",
    "daily_total_messages_limit",
    "daily_availability_checks_limit",
    "device_gap_seconds",
    "contact_gap_seconds",
    "check_gap_seconds",
    "canary_address",
)


def utc_today(now: datetime | None = None) -> date:
    """Usage days are UTC days: counters reset at 00:00 UTC."""
    return (now or timezone.now()).astimezone(UTC).date()


def next_utc_midnight(now: datetime | None = None) -> datetime:
    day = utc_today(now)
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


# Create, update, delete


def _clean_relay_url(value: str) -> str:
    """A server URL, also refused when its host is outside RELAY_ALLOWED_NETWORKS."""
    value = clean_server_url(value)
    relay_host_check(value)
    return value


# Model field -> (normalizer, the API's name for the field), for the values a line
# stores normalized.
_NORMALIZED = {
    "server_url": (_clean_relay_url, "serverUrl"),
    "phone": (clean_phone, "phone"),
    "email": (clean_email, "email"),
}


def _apply(line: Line, fields: dict) -> list[str]:
    """Set the given fields (None: not given) on the line, normalized; returns their
    names. ValidationFailed for a server URL, phone or email that is not one."""
    changed = []
    for name, value in fields.items():
        if name not in EDITABLE_FIELDS:
            raise TypeError(f"{name!r} is not an editable field of a line")
        if value is None:
            continue
        if name in _NORMALIZED:
            normalize, api_name = _NORMALIZED[name]
            try:
                value = normalize(value)
            except ValueError as exc:
                raise ValidationFailed(str(exc), field=api_name) from None
        elif isinstance(value, str):
            value = value.strip()
        setattr(line, name, value)
        changed.append(name)
    return changed


def _sealed_relay(server_url: str, relay_password: str) -> tuple[str, str]:
    """A relay's address and password for a signal or a task, the password encrypted."""
    return (server_url, encrypt(relay_password))


def _send_line_saved(line: Line, created: bool, left_relay: tuple[str, str] | None = None) -> None:
    transaction.on_commit(
        lambda: line_saved.send(
            sender=Line,
            line_id=line.pk,
            created=created,
            workspace_id=line.workspace_id,
            left_relay=left_relay,
        ),
        robust=True,
    )


def _send_capacity_changed(line: Line, reason: str) -> None:
    line_id, workspace_id = line.pk, line.workspace_id
    transaction.on_commit(
        lambda: line_capacity_changed.send(
            sender=Line, line_id=line_id, workspace_id=workspace_id, reason=reason
        ),
        robust=True,
    )


def _queue_health_check(line: Line) -> None:
    """Check the relay once the line is committed, so a new or re-pointed line shows
    healthy or down within seconds instead of at the next periodic round."""
    from lines.tasks import line_health_check_task  # tasks imports this module

    line_id = line.pk
    transaction.on_commit(lambda: line_health_check_task.delay(line_id), robust=True)


# Changes that point the line at another relay (or log in differently).
_RELAY_FIELDS = ("server_url", "relay_password")


class LineFields(TypedDict, total=False):
    """A line's editable fields, as line_create and line_update take them (None, like
    a field left out: the model's default on create, unchanged on update)."""

    relay_password: str | None
    phone: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    is_active: bool | None
    provisioning_status: str | None
    line_type: str | None
    daily_new_conversations_limit: int | None
    daily_total_messages_limit: int | None
    daily_availability_checks_limit: int | None
    device_gap_seconds: int | None
    contact_gap_seconds: int | None
    check_gap_seconds: int | None
    canary_address: str | None


@transaction.atomic
def line_create(*, workspace, server_url: str, **fields: Unpack[LineFields]) -> Line:
    """Create a line. The relay password is stored encrypted and never returned."""
    line = Line(workspace=workspace)
    _apply(line, {"server_url": server_url, **fields})
    if warmup.policy_for(workspace.pk).warmup_days > 0:
        line.warmup_started_at = timezone.now()
    line.save()
    _send_line_saved(line, created=True)
    _queue_health_check(line)
    if line.is_active:
        _send_capacity_changed(line, "created")
    return line


@transaction.atomic
def line_update(
    *, workspace, line_id: str, server_url: str | None = None, **fields: Unpack[LineFields]
) -> Line:
    """Change the given fields of a line (None: unchanged)."""
    line = _locked_line(workspace=workspace, line_id=line_id)
    before = {name: getattr(line, name) for name in EDITABLE_FIELDS}
    changed = _apply(line, {"server_url": server_url, **fields})
    if changed:
        relay_changed = any(getattr(line, name) != before[name] for name in _RELAY_FIELDS)
        if relay_changed:
            # Whoever ran the old relay (or knew its password) may know the old callback
            # URL: the line gets a new one, and the old one stops working.
            line.rotate_webhook_token()
            changed += ["webhook_token", "webhook_token_hash"]
        line.save(update_fields=[*changed, "updated_at"])
        left_relay = (
            _sealed_relay(before["server_url"], before["relay_password"]) if relay_changed else None
        )
        _send_line_saved(line, created=False, left_relay=left_relay)
        if relay_changed:
            _queue_health_check(line)
        if line.is_active and not before["is_active"]:
            _send_capacity_changed(line, "activated")
        elif (
            line.is_active
            and line.daily_availability_checks_limit > before["daily_availability_checks_limit"]
        ):
            _send_capacity_changed(line, "limit_raised")
    return line


@transaction.atomic
def line_webhook_token_rotate(*, workspace, line_id: str) -> Line:
    """Give the line a new relay callback token: the old callback URL stops working
    at once, and the relay's registration moves to the new one (line_saved)."""
    line = _locked_line(workspace=workspace, line_id=line_id)
    line.rotate_webhook_token()
    line.save(update_fields=["webhook_token", "webhook_token_hash", "updated_at"])
    _send_line_saved(line, created=False)
    return line


@transaction.atomic
def line_delete(*, workspace, line_id: str) -> None:
    line = _locked_line(workspace=workspace, line_id=line_id)
    left_relay = _sealed_relay(line.server_url, line.relay_password)
    line.delete()
    transaction.on_commit(
        lambda: line_deleted.send(
            sender=Line, line_id=line_id, workspace_id=workspace.pk, left_relay=left_relay
        ),
        robust=True,
    )


def _locked_line(*, workspace, line_id: str) -> Line:
    line = (
        Line.objects.select_for_update(no_key=True).filter(workspace=workspace, pk=line_id).first()
    )
    if line is None:
        raise NotFound("Line not found")
    return line


# Warm-up and the workspace's line policy


@transaction.atomic
def line_warmup_restart(*, workspace, line_id: str, now: datetime | None = None) -> Line:
    """An owner starts the line's warm-up again from day 1."""
    line = _locked_line(workspace=workspace, line_id=line_id)
    if not warmup.start_warmup(line, now=now):
        raise Conflict(
            "Warm-up is off in this workspace (0 warm-up days): set the days in Settings first",
            code="WARMUP_OFF",
        )
    return line


@transaction.atomic
def line_warmup_end(*, workspace, line_id: str) -> Line:
    """An owner ends the line's warm-up: its own new-conversation cap applies at once."""
    line = _locked_line(workspace=workspace, line_id=line_id)
    if line.warmup_started_at is not None:
        line.warmup_started_at = None
        line.save(update_fields=["warmup_started_at", "updated_at"])
        if line.is_active:
            _send_capacity_changed(line, "warmup_ended")
    return line


# The bounds of the policy's settings, shared by the API, the forms and the admin.
WARMUP_START_CAP_MAX = 100_000
WARMUP_DAYS_MAX = 90
GAP_JITTER_PERCENT_MAX = 90


@transaction.atomic
def line_policy_update(
    *,
    workspace,
    warmup_start_cap: int | None = None,
    warmup_days: int | None = None,
    gap_jitter_percent: int | None = None,
    spread_over_window: bool | None = None,
) -> warmup.Policy:
    """Change the workspace's line policy (None: unchanged, the default when unset)."""
    current = warmup.policy_for(workspace.pk)
    values = {
        "warmup_start_cap": current.warmup_start_cap,
        "warmup_days": current.warmup_days,
        "gap_jitter_percent": current.gap_jitter_percent,
        "spread_over_window": current.spread_over_window,
    }
    given = {
        "warmup_start_cap": (warmup_start_cap, WARMUP_START_CAP_MAX, "warmupStartCap"),
        "warmup_days": (warmup_days, WARMUP_DAYS_MAX, "warmupDays"),
        "gap_jitter_percent": (gap_jitter_percent, GAP_JITTER_PERCENT_MAX, "gapJitterPercent"),
    }
    for name, (value, highest, api_name) in given.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= highest:
            raise ValidationFailed(f"Must be a whole number from 0 to {highest}", field=api_name)
        values[name] = value
    if spread_over_window is not None:
        values["spread_over_window"] = bool(spread_over_window)
    LinePolicy.objects.update_or_create(workspace=workspace, defaults=values)
    return warmup.Policy(**values)


# Daily usage caps


def _usage_columns(kind: str) -> tuple[str, str]:
    try:
        return USAGE_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown usage kind {kind!r}") from None


def usage_try_consume(
    *, line: Line, kind: str, now: datetime | None = None, amount: int = 1
) -> bool:
    """Take `amount` from the line's cap for today; False (and nothing taken) when it
    would go over.

    `UPDATE ... SET n = n + amount WHERE n + amount <= limit` is atomic, so the cap
    holds however many workers race for the last slot. The limit is read from the
    line row in the same statement, so an edit to the limit applies at once.
    """
    return _usage_consume(line.pk, kind, utc_today(now), amount)


def _usage_consume(line_id: str, kind: str, day: date, amount: int) -> bool:
    counter, limit_column = _usage_columns(kind)
    limit = Subquery(Line.objects.filter(pk=line_id).values(limit_column)[:1])
    for _attempt in range(2):
        updated = LineUsage.objects.filter(
            line_id=line_id, date=day, **{f"{counter}__lte": limit - amount}
        ).update(**{counter: F(counter) + amount})
        if updated:
            return True
        if LineUsage.objects.filter(line_id=line_id, date=day).exists():
            return False
        _usage_day_create(line_id=line_id, day=day)
    return False


def _usage_day_create(*, line_id: str, day: date) -> None:
    try:
        with transaction.atomic():
            LineUsage.objects.bulk_create(
                [LineUsage(line_id=line_id, date=day)], ignore_conflicts=True
            )
    except IntegrityError:  # the line itself went away
        pass


def usage_release(*, line: Line, kind: str, now: datetime | None = None, amount: int = 1) -> None:
    """Give back what `usage_try_consume` took, for a request that never reached the relay."""
    counter, _ = _usage_columns(kind)
    LineUsage.objects.filter(
        line_id=line.pk, date=utc_today(now), **{f"{counter}__gte": amount}
    ).update(**{counter: F(counter) - amount})


def usage_for(*, line: Line, now: datetime | None = None) -> LineUsage:
    """Today's counters (an unsaved zero row when nothing was used yet)."""
    day = utc_today(now)
    return LineUsage.objects.filter(line_id=line.pk, date=day).first() or LineUsage(
        line_id=line.pk, date=day
    )


# Gaps


def _db_now(now: datetime | None):
    """The instant a gap is measured from, as an SQL expression: the database's clock,
    shared by every worker, unless the caller passes its own `now` (tests, replays)."""
    if now is None:
        return Now()
    return Value(now, output_field=DateTimeField())


def _gap_elapsed(column: str, gap_seconds: int, now: datetime | None) -> Q:
    """`column` is empty or at least `gap_seconds` before now, compared in the database."""
    threshold = _db_now(now) - Value(timedelta(seconds=gap_seconds))
    return Q(**{f"{column}__isnull": True}) | Q(**{f"{column}__lte": threshold})


def _claim_gap(*, line: Line, column: str, gap_seconds: int, now: datetime | None) -> bool:
    """Move `column` to now when the gap since its last value has elapsed; True if we won."""
    claimed = (
        Line.objects.filter(pk=line.pk)
        .filter(_gap_elapsed(column, gap_seconds, now))
        .update(**{column: _db_now(now)})
    )
    if claimed:
        _note_stamp(line, column, now)
    return bool(claimed)


def _note_stamp(line: Line, column: str, now: datetime | None) -> None:
    """Keep the in-memory line in step with the stamp just written."""
    if now is None:
        line.refresh_from_db(fields=[column])  # the instant the database wrote
    else:
        setattr(line, column, now)


def line_claim_check_slot(*, line: Line, now: datetime | None = None) -> bool:
    """Claim the right to send the next availability check on this line now."""
    return _claim_gap(
        line=line, column="last_check_at", gap_seconds=line.check_gap_seconds, now=now
    )


def _seconds_until(last: datetime | None, gap_seconds: int, now: datetime) -> float:
    if last is None:
        return 0.0
    return max(0.0, (last + timedelta(seconds=gap_seconds) - now).total_seconds())


# Round robin

NO_ACTIVE_LINE = "no_active_line"
ALL_DOWN = "all_down"
QUOTA_EXHAUSTED = "quota_exhausted"
WAIT = "wait"
BUSY_RETRY_SECONDS = 0.02
QUOTA_RETRY_SECONDS = 3600


@dataclass
class LinePick:
    """A line holding one claimed check slot (gap claimed, quota taken), or why not."""

    line: Line | None
    reason: str | None = None
    retry_after: float = 0.0


def line_pick_for_check(
    *, workspace, now: datetime | None = None, line_id: str | None = None
) -> LinePick:
    """Pick a line for one availability check, round robin, and claim its slot.

    Candidates: the workspace's active lines that are not down, still have checks
    left today and whose gap has elapsed, least recently used first. A candidate is
    claimed by locking its row with SKIP LOCKED (so concurrent workers spread over
    the lines instead of queueing on one row) while re-checking its gap, taking its
    quota with a conditional update and restarting its gap, in one short
    transaction. A named line (`line_id`, a send checking its recipient on its own
    line) waits for its row lock instead: a worker holds it for a few statements,
    and going away would cost the send a round trip through the queue. With no
    line: NO_ACTIVE_LINE, ALL_DOWN, QUOTA_EXHAUSTED, or WAIT with the seconds until
    the soonest gap ends.

    Without `now` the gaps are measured by the database's clock (see _db_now); the
    usage day still follows this process's clock (a second of skew at midnight
    moves one check to the other day, which no cap minds).
    """
    day = now or timezone.now()
    if line_id is not None:
        return _pick_named_line_for_check(workspace=workspace, line_id=line_id, now=now, day=day)
    lines, current = _check_candidates(workspace=workspace, now=now, day=day)
    for line in lines:
        if _usable_for_check(line, current) and _claim_one_check(line=line, now=now, day=day):
            return LinePick(line)
    return _why_no_line(lines, current)


def _pick_named_line_for_check(
    *, workspace, line_id: str, now: datetime | None, day: datetime
) -> LinePick:
    """line_pick_for_check on one line: the line is read under its row lock, so the
    read is the check (no candidate list to read first), and its gap restarts at the
    instant of that read."""
    with transaction.atomic():
        lines, current = _check_candidates(workspace=workspace, now=now, day=day, line_id=line_id)
        if not (lines and _usable_for_check(lines[0], current)):
            return _why_no_line(lines, current)
        line = lines[0]
        if not usage_try_consume(line=line, kind="availability_checks", now=day):
            return LinePick(None, QUOTA_EXHAUSTED, retry_after=QUOTA_RETRY_SECONDS)
        Line.objects.filter(pk=line.pk).update(last_check_at=current)
        line.last_check_at = current
        return LinePick(line)


@dataclass
class CheckReservation:
    """Check slots claimed at once: (line, how many) in round-robin order, or why
    there are none (the reasons and `retry_after` of LinePick)."""

    slots: list[tuple[Line, int]]
    reason: str | None = None
    retry_after: float = 0.0


# A line without a gap takes at least this many of a reservation's slots, so a
# reservation touches a few lines with a few statements each rather than every line
# for one slot; least recently used first, so consecutive reservations still rotate.
RESERVE_MIN_PER_LINE = 8


def line_reserve_checks(*, workspace, count: int, now: datetime | None = None) -> CheckReservation:
    """Claim up to `count` check slots across the workspace's lines, for checks that
    will be sent together (a background job's round).

    Same candidates and order as line_pick_for_check. A line with a gap gives at most
    one slot (its gap restarts), so the gap holds between any two checks on it. The
    lines without a gap give several each, all in one transaction: a conditional
    update of each line's counter (`n = n + k WHERE n + k <= limit`, k halved until it
    fits, so the cap holds under any number of workers), then one stamp of their
    last check. Fewer than `count` slots may come back; none only with the reason
    line_pick_for_check would give.
    """
    day = now or timezone.now()
    lines, current = _check_candidates(workspace=workspace, now=now, day=day)
    usable = [line for line in lines if _usable_for_check(line, current)]
    slots: list[tuple[Line, int]] = []
    left = count
    for line in [line for line in usable if line.check_gap_seconds]:
        if left > 0 and _claim_one_check(line=line, now=now, day=day):
            slots.append((line, 1))
            left -= 1
    gapless = [line for line in usable if not line.check_gap_seconds]
    wanted: dict[str, int] = {}
    for position, line in enumerate(gapless):
        if left <= 0:
            break
        share = max(RESERVE_MIN_PER_LINE, -(-left // (len(gapless) - position)))
        wanted[line.pk] = min(left, share, line.daily_availability_checks_limit - line.checks_today)
        left -= wanted[line.pk]
    if wanted:
        taken = _claim_checks_without_gap(wanted=wanted, now=now, day=day)
        for line in gapless:
            if taken.get(line.pk):
                slots.append((line, taken[line.pk]))
                if now is not None:
                    line.last_check_at = now
    if slots:
        return CheckReservation(slots)
    pick = _why_no_line(lines, current)
    return CheckReservation([], pick.reason, pick.retry_after)


def _check_candidates(
    *, workspace, now: datetime | None, day: datetime, line_id: str | None = None
) -> tuple[list[Line], datetime]:
    """The active lines, least recently checked first, with today's count, and the
    database's "now" as of this read (only to skip lines and size waits; a claim
    compares in the database again). One named line (`line_id`) is read under its row
    lock instead, in the caller's transaction: that read is its claim's check."""
    lines = Line.objects.filter(workspace=workspace, is_active=True)
    if line_id is not None:
        lines = lines.filter(pk=line_id).select_for_update(no_key=True)
    lines = list(
        lines.annotate(checks_today=_checks_today(day), db_now=_db_now(now)).order_by(
            F("last_check_at").asc(nulls_first=True), "created_at"
        )
    )
    return lines, (lines[0].db_now if lines else day)


def _usable_for_check(line: Line, current: datetime) -> bool:
    return not (
        line.health_status in Line.OUT_OF_ROTATION
        or line.checks_today >= line.daily_availability_checks_limit
        or (
            line.check_gap_seconds
            and _seconds_until(line.last_check_at, line.check_gap_seconds, current) > 0
        )
    )


def _claim_one_check(*, line: Line, now: datetime | None, day: datetime) -> bool:
    """Lock the line (SKIP LOCKED), re-check its gap, take one check and restart the
    gap, in one transaction; False when another worker holds it or was first."""
    candidate = Line.objects.select_for_update(no_key=True, skip_locked=True).filter(
        pk=line.pk, is_active=True
    )
    if line.check_gap_seconds:
        # Re-checked under the lock: another worker may have just used the gap.
        candidate = candidate.filter(_gap_elapsed("last_check_at", line.check_gap_seconds, now))
    with transaction.atomic():
        locked = (
            candidate.exclude(health_status__in=Line.OUT_OF_ROTATION)
            .values_list("pk", flat=True)
            .first()
        )
        if locked is None:
            return False
        if not usage_try_consume(line=line, kind="availability_checks", now=day):
            return False
        Line.objects.filter(pk=line.pk).update(last_check_at=_db_now(now))
        _note_stamp(line, "last_check_at", now)
        return True


def _claim_checks_without_gap(
    *, wanted: dict[str, int], now: datetime | None, day: datetime
) -> dict[str, int]:
    """Take `wanted[line_id]` checks of gap-less lines; how many were taken (a line
    whose counter moved since it was read gives none this time).

    One transaction (one commit) for the lot. The lines still active, up and
    gap-less are locked first, with SKIP LOCKED (one held by another worker is left
    for this time), in the order line_pick_for_check takes its locks (line, then its
    counter), so no two workers wait on each other in a cycle. Then one conditional
    update of their counters (`n = n + k WHERE n + k <= limit`, the limit read from
    the line in the same statement) and one stamp of their last check (round robin
    order).
    """
    usage_day = utc_today(day)
    with transaction.atomic():
        locked = list(
            Line.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(pk__in=list(wanted), is_active=True, check_gap_seconds=0)
            .exclude(health_status__in=Line.OUT_OF_ROTATION)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        amounts = {line_id: wanted[line_id] for line_id in locked if wanted[line_id] > 0}
        taken = _usage_consume_many(amounts, usage_day)
        missing = [line_id for line_id in amounts if line_id not in taken]
        if missing and not LineUsage.objects.filter(line_id__in=missing, date=usage_day).exists():
            for line_id in missing:  # the first checks of the day
                _usage_day_create(line_id=line_id, day=usage_day)
            taken |= _usage_consume_many(
                {line_id: amounts[line_id] for line_id in missing}, usage_day
            )
        if taken:
            Line.objects.filter(pk__in=list(taken)).update(last_check_at=_db_now(now))
    return taken


def _usage_consume_many(amounts: dict[str, int], day: date) -> dict[str, int]:
    """`UPDATE ... SET n = n + k WHERE n + k <= limit` for several lines' availability
    checks in one statement; the amounts of the lines it took them from."""
    if not amounts:
        return {}
    usage, line = LineUsage._meta, Line._meta
    quote = connection.ops.quote_name
    counter = quote("availability_checks_count")
    line_column = quote(usage.get_field("line").column)
    increment = "CASE " + " ".join([f"WHEN {line_column} = %s THEN %s"] * len(amounts)) + " END"
    params = [value for pair in amounts.items() for value in pair]
    ids = ", ".join(["%s"] * len(amounts))
    sql = (
        f"UPDATE {quote(usage.db_table)} SET {counter} = {counter} + {increment} "  # noqa: S608
        f"WHERE {quote('date')} = %s AND {line_column} IN ({ids}) "
        f"AND {counter} + {increment} <= (SELECT {quote('daily_availability_checks_limit')} "
        f"FROM {quote(line.db_table)} WHERE {quote(line.pk.column)} = {line_column}) "
        f"RETURNING {line_column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [*params, connection.ops.adapt_datefield_value(day), *amounts, *params],
        )
        return {line_id: amounts[line_id] for (line_id,) in cursor.fetchall()}


def _checks_today(now: datetime):
    used = LineUsage.objects.filter(line=OuterRef("pk"), date=utc_today(now)).values(
        "availability_checks_count"
    )[:1]
    return Coalesce(Subquery(used), Value(0))


def _why_no_line(lines: list[Line], now: datetime) -> LinePick:
    if not lines:
        return LinePick(None, NO_ACTIVE_LINE)
    up = [line for line in lines if line.health_status not in Line.OUT_OF_ROTATION]
    if not up:
        return LinePick(None, ALL_DOWN)
    with_quota = [line for line in up if line.checks_today < line.daily_availability_checks_limit]
    if not with_quota:
        return LinePick(None, QUOTA_EXHAUSTED, retry_after=QUOTA_RETRY_SECONDS)
    wait = min(
        _seconds_until(line.last_check_at, line.check_gap_seconds, now) for line in with_quota
    )
    # Zero: a line is free but another worker holds its row for a moment.
    return LinePick(None, WAIT, retry_after=max(wait, BUSY_RETRY_SECONDS))


# Health


def _down_after() -> int:
    return max(1, int(getattr(settings, "LINE_DOWN_AFTER_FAILURES", 2)))


def _mark_healthy(line: Line, *, now: datetime, detail: str) -> None:
    """The relay answers and iMessage works. A quarantined or held line stays so
    (lines.safety releases it); a down one comes back (to its quarantine or hold, if
    it had one)."""
    fields = {
        "health_status": Line.Health.HEALTHY,
        "health_consecutive_failures": 0,
        "health_checked_at": now,
        "health_detail": detail[:500],
    }
    with transaction.atomic():
        if (
            Line.objects.filter(pk=line.pk)
            .exclude(health_status__in=Line.OUT_OF_ROTATION)
            .exclude(health_status=Line.Health.DEGRADED)
            .update(**fields)
        ):
            return
        if Line.objects.filter(
            pk=line.pk,
            health_status__in=[Line.Health.QUARANTINED, Line.Health.HELD, Line.Health.DEGRADED],
        ).update(health_consecutive_failures=0, health_checked_at=now):
            return
        back = {**fields}
        if line.safety_action in (Line.SafetyAction.QUARANTINED, Line.SafetyAction.HELD):
            back["health_status"] = Line.Health(line.safety_action)
            back["health_detail"] = line.safety_action_reason
        # Only the update that brings a down line back announces it (round robin had
        # been skipping it, so it may have quota for jobs waiting for tomorrow).
        came_back = Line.objects.filter(pk=line.pk, health_status=Line.Health.DOWN).update(**back)
        if came_back and back["health_status"] == Line.Health.HEALTHY:
            safety._announce(line, "line.recovered", detail)
            _send_capacity_changed(line, "healthy")


def line_record_success(*, line: Line, now: datetime | None = None, detail: str = "") -> None:
    """The relay answered: the line is healthy again. Writes only on a change."""
    if line.health_status != Line.Health.UNKNOWN and not line.health_consecutive_failures:
        return
    now = now or timezone.now()
    _mark_healthy(line, now=now, detail=detail)
    line.refresh_from_db(
        fields=["health_status", "health_consecutive_failures", "health_checked_at"]
    )


def line_record_failure(*, line: Line, detail: str, now: datetime | None = None) -> None:
    """One more consecutive failure; the line goes down after LINE_DOWN_AFTER_FAILURES."""
    now = now or timezone.now()
    threshold = _down_after()
    with transaction.atomic():
        Line.objects.filter(pk=line.pk).update(
            health_consecutive_failures=F("health_consecutive_failures") + 1,
            health_checked_at=now,
            health_detail=detail[:500],
        )
        # The status follows the counter in a second conditional update so concurrent
        # failures cannot leave a line "healthy" with a counter above the threshold.
        went_down = (
            Line.objects.filter(pk=line.pk, health_consecutive_failures__gte=threshold)
            .exclude(health_status=Line.Health.DOWN)
            .update(health_status=Line.Health.DOWN)
        )
        if went_down:
            line.refresh_from_db()
            safety._announce(line, "line.down", detail)
    line.refresh_from_db(
        fields=["health_status", "health_consecutive_failures", "health_checked_at"]
    )


def relay_failure_is_line_fault(exc: RelayError) -> bool:
    """Does this failure say something about the line (vs. one address)?

    An `iMessage Error` for one address is the relay answering normally about a
    number it cannot resolve; the helper being disconnected is the line's fault.
    """
    if exc.error_type == "iMessage Error" and "helper" not in exc.message.lower():
        return False
    return exc.status != 400


def line_health_check(*, line: Line, now: datetime | None = None) -> Line:
    """Ping the relay, read its server info and check the canary address.

    The relay not answering (or its helper disconnected) is one more failure towards
    down. A relay that answers with no iMessage account is iMessage proven dead:
    quarantine. A canary not confirmed on iMessage degrades the line, twice in a row
    quarantines it. All passing: healthy (or degraded on the send evidence), and a
    quarantined line whose cool-down is over is released.
    """
    client = get_client(line)
    result = client.health()
    now = now or timezone.now()
    signed_out = (
        bool(result.info)
        and result.info.get("helper_connected")
        and (result.info.get("detected_imessage") is None)
    )
    if signed_out and safety.safety_enabled():
        _mark_healthy(line, now=now, detail=result.detail)
        line.refresh_from_db()
        safety.line_quarantine(line=line, reason=f"iMessage is dead: {result.detail}", now=now)
        return line
    if not result.healthy:
        logger.warning("Line %s failed its health check: %s", line.pk, result.detail)
        line_record_failure(line=line, detail=result.detail, now=now)
        line.refresh_from_db()
        return line
    canary_ok, canary_detail = _canary_check(line, client, now)
    _mark_healthy(line, now=now, detail=result.detail)
    line.refresh_from_db()
    if canary_ok is False:
        failures = line.canary_consecutive_failures + 1
        Line.objects.filter(pk=line.pk).update(canary_consecutive_failures=failures)
        line.canary_consecutive_failures = failures
        if safety.safety_enabled() and failures >= getattr(
            settings, "LINE_CANARY_FAILURES_TO_QUARANTINE", 2
        ):
            safety.line_quarantine(line=line, reason=f"iMessage is dead: {canary_detail}", now=now)
            return line
    elif canary_ok and line.canary_consecutive_failures:
        Line.objects.filter(pk=line.pk).update(canary_consecutive_failures=0)
        line.canary_consecutive_failures = 0
    if (
        line.safety_action == Line.SafetyAction.QUARANTINED
        and line.safety_action_until is not None
        and line.safety_action_until <= now
        and not line.canary_consecutive_failures
    ):
        with transaction.atomic():
            safety.line_release(
                line=line, reason=f"Cool-down over and probes pass ({result.detail})", now=now
            )
    safety.line_safety_evaluate(line_id=line.pk, now=now)
    line.refresh_from_db()
    return line


def _canary_check(line: Line, client, now: datetime) -> tuple[bool | None, str]:
    """Is the canary address on iMessage, as this line sees it? None when there is no
    canary or no check left in the line's budget today (the check counts against it)."""
    address = safety.canary_for(line)
    if not address or not usage_try_consume(line=line, kind="availability_checks", now=now):
        return None, ""
    try:
        if client.check(address):
            return True, ""
        return False, f"the canary {address} is not on iMessage as this line sees it"
    except RelayError as exc:
        return False, f"checking the canary {address} failed: {exc.message}"
