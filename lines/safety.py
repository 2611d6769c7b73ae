"""Line safety: the evidence that a line still reaches people, and what is done about it.

Evidence comes from two sides. The health check proves iMessage works (the relay's
signed-in account, and an availability check of a canary address known to be on
iMessage). The send pipeline reports what happened to each send through
`line_evidence_record` (sent, delivered, failed at the relay, undelivered: no
receipt in time, and replies), kept per line and UTC hour in LineActivity.

From the last 24 hours comes the spam risk of the published spam monitor (failure
rate < 5 % low, 5-15 % medium, > 15 % high; a run of consecutive failures is high
too), and from it the automatic action:
- medium: the line's effective daily caps are halved for LINE_CAPS_HALVED_HOURS;
- high, or iMessage proven dead: quarantine. The line leaves rotation (like a down
  line: campaigns move the leads it has not contacted yet, queued messages on it
  wait), and is released once the cool-down is over and the probes pass.
- receipts that do not come: a line whose last LINE_UNCONFIRMED_SENDS_LIMIT iMessages
  in a row have no delivery receipt after the time its receipts normally take
  (`receipt_wait`) is held (`line_hold`): out of rotation like a quarantined line,
  with a probe, until a receipt comes (released at once) or the sends go undelivered
  (then the run of failures quarantines it). Far fewer sends go into a line that
  silently stopped delivering than if each had to time out first.
An owner can override any of them (`line_safety_override`): the action is lifted and
no action is taken on risk or missing receipts until the override ends; proven-dead
iMessage still quarantines.

Every change of state is announced with `line_safety_changed` (inside the caller's
transaction), which messaging turns into webhook events and emails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from lines import warmup
from lines.models import Line, LineActivity
from lines.signals import line_capacity_changed, line_safety_changed
from tuco.errors import NotFound

logger = logging.getLogger(__name__)

LOW, MEDIUM, HIGH = "low", "medium", "high"
FAILURE_KINDS = ("failed", "undelivered")

RECOMMENDATIONS = {
    LOW: "Line is healthy.",
    MEDIUM: "Reduce send volume by 50% and monitor for 24h.",
    HIGH: "Pause campaigns on this line immediately and wait 24-48h.",
}


def _setting(name: str, default):
    return getattr(settings, name, default)


def safety_enabled() -> bool:
    return bool(_setting("LINE_SAFETY_ENABLED", True))


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


# Evidence


def line_evidence_record(
    *, line_id: str, kind: str, at: datetime | None = None, amount: int = 1
) -> None:
    """Count `amount` `kind` events (LineActivity.KINDS) on the line in `at`'s hour.

    A failure (relay error, undelivered) extends the line's run of consecutive
    failures and re-evaluates its risk; a delivery receipt ends the run. Safe inside
    or outside a transaction.
    """
    if kind not in LineActivity.KINDS:
        raise ValueError(f"unknown line evidence {kind!r}")
    at = at or timezone.now()
    hour = hour_of(at)
    with transaction.atomic():
        if not LineActivity.objects.filter(line_id=line_id, hour=hour).update(
            **{kind: F(kind) + amount}
        ):
            try:
                with transaction.atomic():
                    LineActivity.objects.create(line_id=line_id, hour=hour, **{kind: amount})
            except IntegrityError:  # another writer created the hour, or the line is gone
                LineActivity.objects.filter(line_id=line_id, hour=hour).update(
                    **{kind: F(kind) + amount}
                )
        if kind in FAILURE_KINDS:
            Line.objects.filter(pk=line_id).update(
                send_consecutive_failures=F("send_consecutive_failures") + amount
            )
            line_safety_evaluate(line_id=line_id, now=at)
        elif kind == "delivered":
            Line.objects.filter(pk=line_id, send_consecutive_failures__gt=0).update(
                send_consecutive_failures=0
            )
            held = Line.objects.filter(pk=line_id, safety_action=Line.SafetyAction.HELD).first()
            if held is not None:
                line_release(line=held, reason="A delivery receipt came", now=at)


PROBE_KEY = "lines:probe-soon:{}"


def line_probe_soon(*, line_id: str) -> None:
    """Run the line's health check now (after commit), at most once per
    LINE_PROBE_INTERVAL_SECONDS: a relay that refuses a send may have lost iMessage."""
    from django.core.cache import cache

    from lines.tasks import line_health_check_task  # tasks imports the services

    if not safety_enabled():
        return
    if cache.add(PROBE_KEY.format(line_id), 1, _setting("LINE_PROBE_INTERVAL_SECONDS", 30)):
        transaction.on_commit(lambda: line_health_check_task.delay(line_id), robust=True)


SIGNED_IN_KEY = "lines:signed-in:{}"


def line_confirm_signed_in(*, line: Line, now: datetime | None = None) -> bool:
    """Is the line's Mac still signed in to iMessage? Asked of the relay at most once
    per LINE_PROBE_INTERVAL_SECONDS; a signed-out Mac is quarantined at once.

    A signed-out Mac answers every availability check "no", which would mark every
    recipient as not on iMessage: the send path asks this before trusting the line's
    answers. Makes a network call: not to be used inside a transaction.
    """
    from django.core.cache import cache

    from lines.relay import get_client

    if not safety_enabled():
        return True
    if line.safety_action in (Line.SafetyAction.QUARANTINED, Line.SafetyAction.HELD):
        return False
    key = SIGNED_IN_KEY.format(line.pk)
    try:
        if cache.get(key):
            return True
    except Exception:
        # The cache only saves a probe: while it cannot be reached, ask the relay.
        logger.warning("Signed-in cache unavailable; probing the line", exc_info=True)
    result = get_client(line).health()
    if result.info and result.info.get("detected_imessage") is None:
        line_quarantine(line=line, reason=f"iMessage is dead: {result.detail}", now=now)
        return False
    if result.healthy:
        try:
            cache.set(key, 1, _setting("LINE_PROBE_INTERVAL_SECONDS", 30))
        except Exception:
            logger.warning("Signed-in cache unavailable; not remembered", exc_info=True)
    return True


# Reads


@dataclass
class LineStats:
    sent_24h: int
    failed_24h: int
    delivered_24h: int
    consecutive_failures: int
    sent_7d: int
    replies_7d: int

    @property
    def failure_rate(self) -> float:
        """Per cent of the last 24 hours' sends that failed or went undelivered."""
        if not self.sent_24h:
            return 0.0
        return round(min(100.0, 100.0 * self.failed_24h / self.sent_24h), 1)

    @property
    def delivery_rate(self) -> float | None:
        if not self.sent_24h:
            return None
        return round(min(100.0, 100.0 * self.delivered_24h / self.sent_24h), 1)

    @property
    def reply_rate(self) -> float | None:
        """Replies per outbound message over 7 days, in per cent."""
        if not self.sent_7d:
            return None
        return round(100.0 * self.replies_7d / self.sent_7d, 1)

    @property
    def risk(self) -> str:
        if self.consecutive_failures >= _setting("LINE_QUARANTINE_AFTER_FAILURES", 5):
            return HIGH
        if self.sent_24h < _setting("LINE_RISK_MIN_SENT", 20):
            # Too few sends for a rate to mean anything; a run of failures still does.
            return MEDIUM if self.consecutive_failures >= 3 else LOW
        if self.failure_rate > 15:
            return HIGH
        if self.failure_rate >= 5:
            return MEDIUM
        return LOW

    @property
    def inbound_silent(self) -> bool:
        """Outbound goes on and nobody has answered for a week."""
        return self.sent_7d >= _setting("LINE_SILENCE_MIN_SENT", 100) and not self.replies_7d


def _sums(line_ids, since: datetime) -> dict[str, dict]:
    rows = (
        LineActivity.objects.filter(line_id__in=line_ids, hour__gte=hour_of(since))
        .values("line_id")
        .annotate(**{kind: Sum(kind) for kind in LineActivity.KINDS})
    )
    return {row["line_id"]: row for row in rows}


def line_stats_many(*, lines, now: datetime | None = None) -> dict[str, LineStats]:
    """The spam monitor's figures for each line: two aggregate queries in all."""
    now = now or timezone.now()
    ids = [line.pk for line in lines]
    # The current hour counts in full: "the last 24 hours" is 24 whole hours back.
    day = _sums(ids, now - timedelta(hours=23))
    week = _sums(ids, now - timedelta(days=7))
    stats = {}
    for line in lines:
        d = day.get(line.pk, {})
        w = week.get(line.pk, {})
        stats[line.pk] = LineStats(
            sent_24h=d.get("sent") or 0,
            failed_24h=(d.get("failed") or 0) + (d.get("undelivered") or 0),
            delivered_24h=d.get("delivered") or 0,
            consecutive_failures=line.send_consecutive_failures,
            sent_7d=w.get("sent") or 0,
            replies_7d=w.get("replies") or 0,
        )
    return stats


def line_stats(*, line: Line, now: datetime | None = None) -> LineStats:
    return line_stats_many(lines=[line], now=now)[line.pk]


def line_activity_days(*, lines, days: int = 14, now: datetime | None = None) -> dict:
    """Per line, per UTC day (oldest first, today last) over the last `days` days:
    {line_id: [{"date", "sent", "delivered", "failed", "undelivered", "replies"}]}.
    One query for all the lines."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    dates = [first + timedelta(days=i) for i in range(days)]
    totals = {
        line.pk: {day: dict.fromkeys(LineActivity.KINDS, 0) for day in dates} for line in lines
    }
    rows = LineActivity.objects.filter(
        line_id__in=list(totals),
        hour__gte=datetime(first.year, first.month, first.day, tzinfo=UTC),
    ).values("line_id", "hour", *LineActivity.KINDS)
    for row in rows:
        day = row["hour"].astimezone(UTC).date()
        counts = totals[row["line_id"]].get(day)
        if counts is not None:
            for kind in LineActivity.KINDS:
                counts[kind] += row[kind]
    return {
        line_id: [{"date": day, **counts} for day, counts in by_day.items()]
        for line_id, by_day in totals.items()
    }


# Actions


BANNER_KEY = "lines:out-of-rotation:{}"
BANNER_SECONDS = 30


def lines_out_of_rotation(*, workspace_id: str) -> list[dict]:
    """The workspace's active lines that are quarantined or down, for the dashboard
    banner on every page: cached (a page view costs no query), forgotten whenever a
    line changes state, and at most BANNER_SECONDS old otherwise."""
    from django.core.cache import cache

    key = BANNER_KEY.format(workspace_id)
    lines = cache.get(key)
    if lines is None:
        lines = [
            {
                "pk": line.pk,
                "name": line.display_name,
                "status": line.health_status,
                "status_display": line.get_health_status_display(),
                "detail": line.health_detail,
                "until": line.safety_action_until,
            }
            for line in Line.objects.filter(
                workspace_id=workspace_id,
                is_active=True,
                health_status__in=Line.OUT_OF_ROTATION,
            )
        ]
        cache.set(key, lines, BANNER_SECONDS)
    return lines


def _forget_banner(workspace_id: str) -> None:
    from django.core.cache import cache

    transaction.on_commit(lambda: cache.delete(BANNER_KEY.format(workspace_id)), robust=True)


def _announce(line: Line, event: str, reason: str, **data) -> None:
    _forget_banner(line.workspace_id)
    line_safety_changed.send(
        sender=Line,
        line_id=line.pk,
        workspace_id=line.workspace_id,
        event=event,
        reason=reason,
        data=data,
    )


def _overridden(line: Line, now: datetime) -> bool:
    return line.safety_override_until is not None and line.safety_override_until > now


def line_quarantine(*, line: Line, reason: str, now: datetime | None = None) -> bool:
    """Take the line out of rotation for the cool-down; False when it already was."""
    now = now or timezone.now()
    cooldown = timedelta(minutes=_setting("LINE_QUARANTINE_COOLDOWN_MINUTES", 24 * 60))
    with transaction.atomic():
        moved = (
            Line.objects.filter(pk=line.pk)
            .exclude(safety_action=Line.SafetyAction.QUARANTINED)
            .update(
                health_status=Line.Health.QUARANTINED,
                health_detail=reason[:500],
                safety_action=Line.SafetyAction.QUARANTINED,
                safety_action_reason=reason[:500],
                safety_action_since=now,
                safety_action_until=now + cooldown,
            )
        )
        line.refresh_from_db()
        if moved:
            logger.warning("Line %s quarantined: %s", line.pk, reason)
            _announce(line, "line.quarantined", reason, until=line.safety_action_until)
    return bool(moved)


def _caps_halve(line: Line, reason: str, now: datetime) -> bool:
    hours = _setting("LINE_CAPS_HALVED_HOURS", 24)
    moved = Line.objects.filter(pk=line.pk, safety_action=Line.SafetyAction.NONE).update(
        safety_action=Line.SafetyAction.CAPS_HALVED,
        safety_action_reason=reason[:500],
        safety_action_since=now,
        safety_action_until=now + timedelta(hours=hours),
    )
    line.refresh_from_db()
    if moved:
        _announce(line, "line.spam_risk", reason, spamRisk=MEDIUM, action="caps_halved")
    return bool(moved)


def line_release(
    *, line: Line, reason: str, now: datetime | None = None, status: str = Line.Health.HEALTHY
) -> bool:
    """Lift the action in force. A quarantined line comes back into rotation and is
    handed to `on_line_released`; a held one just comes back (a down line stays down)."""
    now = now or timezone.now()
    with transaction.atomic():
        was_quarantined = line.safety_action == Line.SafetyAction.QUARANTINED
        was_held = line.safety_action == Line.SafetyAction.HELD
        changes = {
            "safety_action": Line.SafetyAction.NONE,
            "safety_action_reason": "",
            "safety_action_since": None,
            "safety_action_until": None,
        }
        if was_quarantined:
            changes |= {
                "health_status": status,
                "health_detail": reason[:500],
                "send_consecutive_failures": 0,
                "canary_consecutive_failures": 0,
            }
        moved = Line.objects.filter(pk=line.pk, safety_action=line.safety_action).update(**changes)
        if moved and was_held:
            Line.objects.filter(pk=line.pk, health_status=Line.Health.HELD).update(
                health_status=status, health_detail=reason[:500]
            )
        line.refresh_from_db()
        if moved and (was_quarantined or was_held):
            logger.info("Line %s released from its %s: %s", line.pk,
                        "quarantine" if was_quarantined else "hold", reason)  # fmt: skip
            _announce(line, "line.recovered", reason)
            if was_quarantined:
                on_line_released(line)
            line_id, workspace_id = line.pk, line.workspace_id
            transaction.on_commit(
                lambda: line_capacity_changed.send(
                    sender=Line, line_id=line_id, workspace_id=workspace_id, reason="released"
                ),
                robust=True,
            )
    return bool(moved)


def on_line_released(line: Line) -> None:
    """A line comes back from quarantine at reduced caps: its warm-up starts over
    (unless the workspace has warm-up off). Called inside the transaction that
    releases it."""
    if warmup.start_warmup(line):
        logger.info("Line %s released; warm-up starts over", line.pk)


def receipt_wait(latencies: list[float]) -> timedelta:
    """How long after a send its delivery receipt is overdue on a line whose recent
    receipts took `latencies` seconds: twice the slowest of the fastest nine in ten,
    at least LINE_RECEIPT_WAIT_MIN_SECONDS (also with no receipts to learn from) and
    at most UNDELIVERED_AFTER_MINUTES (the sweep flags it undelivered then)."""
    floor = float(_setting("LINE_RECEIPT_WAIT_MIN_SECONDS", 120))
    ceiling = 60.0 * _setting("UNDELIVERED_AFTER_MINUTES", 30)
    seconds = floor
    if latencies:
        ordered = sorted(max(0.0, x) for x in latencies)
        seconds = max(floor, 2 * ordered[int(0.9 * (len(ordered) - 1))])
    return timedelta(seconds=max(0.0, min(seconds, ceiling)))


def overdue_in_a_row(
    *, sent_at: list[datetime], last_confirmed: datetime | None, wait: timedelta, now: datetime
) -> int:
    """Of a line's sends still awaiting a receipt (`sent_at`), how many went after its
    latest send that got one (`last_confirmed`) and are more than `wait` old."""
    return sum(
        1 for at in sent_at if at <= now - wait and (last_confirmed is None or at > last_confirmed)
    )


def unconfirmed_limit() -> int:
    return int(_setting("LINE_UNCONFIRMED_SENDS_LIMIT", 5))


def line_hold(*, line: Line, reason: str, now: datetime | None = None) -> bool:
    """Hold new sends on the line until its delivery receipts come: out of rotation
    (campaigns move the leads it has not contacted yet, its queued messages wait) and
    probed now. Released by the next receipt (`line_evidence_record`) or an owner;
    quarantined when the sends it waits on go undelivered. False when line safety is
    off, overridden, or the line is already out of rotation."""
    now = now or timezone.now()
    if not safety_enabled() or _overridden(line, now):
        return False
    with transaction.atomic():
        moved = (
            Line.objects.filter(
                pk=line.pk,
                health_status__in=[Line.Health.HEALTHY, Line.Health.DEGRADED, Line.Health.UNKNOWN],
                safety_action__in=[Line.SafetyAction.NONE, Line.SafetyAction.CAPS_HALVED],
            )
            .filter(Q(safety_override_until__isnull=True) | Q(safety_override_until__lte=now))
            .update(
                health_status=Line.Health.HELD,
                health_detail=reason[:500],
                safety_action=Line.SafetyAction.HELD,
                safety_action_reason=reason[:500],
                safety_action_since=now,
                safety_action_until=None,
            )
        )
        line.refresh_from_db()
        if moved:
            logger.warning("Line %s held: %s", line.pk, reason)
            _announce(line, "line.spam_risk", reason, action="held")
            line_probe_soon(line_id=line.pk)
    return bool(moved)


def line_safety_override(*, workspace, line_id: str, now: datetime | None = None) -> Line:
    """An owner lifts the automatic action on a line: released now, and no action on
    risk for LINE_OVERRIDE_HOURS (proven-dead iMessage still quarantines)."""
    now = now or timezone.now()
    hours = _setting("LINE_OVERRIDE_HOURS", 24)
    with transaction.atomic():
        line = (
            Line.objects.select_for_update(no_key=True)
            .filter(workspace=workspace, pk=line_id)
            .first()
        )
        if line is None:
            raise NotFound("Line not found")
        Line.objects.filter(pk=line.pk).update(
            safety_override_until=now + timedelta(hours=hours), send_consecutive_failures=0
        )
        line.refresh_from_db()
        if line.safety_action:
            line_release(line=line, reason="Released by an owner", now=now)
    return line


def line_safety_evaluate(*, line_id: str, now: datetime | None = None) -> Line | None:
    """Apply the action the line's evidence calls for (see the module docstring)."""
    now = now or timezone.now()
    line = Line.objects.filter(pk=line_id).first()
    if line is None:
        return None
    if not safety_enabled():
        return line
    if line.safety_action == Line.SafetyAction.CAPS_HALVED and not line.caps_halved(now):
        hours = _setting("LINE_CAPS_HALVED_HOURS", 24)
        line_release(line=line, reason=f"Caps back to normal after {hours} h", now=now)
    stats = line_stats(line=line, now=now)
    risk = stats.risk
    if line.safety_action != Line.SafetyAction.QUARANTINED and not _overridden(line, now):
        if risk == HIGH:
            reason = _risk_reason(stats)
            if line_quarantine(line=line, reason=reason, now=now):
                _announce(line, "line.spam_risk", reason, spamRisk=HIGH, action="quarantined")
            return line
        if risk == MEDIUM and not line.safety_action:
            _caps_halve(line, _risk_reason(stats), now)
    _settle_status(line, stats, now)
    return line


def _risk_reason(stats: LineStats) -> str:
    return (
        f"{stats.failed_24h} of {stats.sent_24h} sends failed or went undelivered in 24h "
        f"({stats.failure_rate}%), {stats.consecutive_failures} in a row"
    )


def _degraded_reason(line: Line, stats: LineStats, now: datetime) -> str:
    if line.caps_halved(now):
        return f"Caps halved: {line.safety_action_reason}"
    if stats.risk != LOW:
        return _risk_reason(stats)
    if line.canary_consecutive_failures:
        return "The canary address did not answer as on iMessage"
    if stats.consecutive_failures:
        return f"{stats.consecutive_failures} sends in a row failed or went undelivered"
    if stats.inbound_silent:
        return f"No reply in 7 days to {stats.sent_7d} messages"
    return ""


def _settle_status(line: Line, stats: LineStats, now: datetime) -> None:
    """Healthy <-> degraded, for a line that is neither down nor quarantined."""
    if line.health_status not in (Line.Health.HEALTHY, Line.Health.DEGRADED):
        return
    reason = _degraded_reason(line, stats, now)
    status = Line.Health.DEGRADED if reason else Line.Health.HEALTHY
    if status == line.health_status and (not reason or reason == line.health_detail):
        return
    changes = {"health_status": status}
    if reason or line.health_status == Line.Health.DEGRADED:
        changes["health_detail"] = reason or "Evidence clear"
    Line.objects.filter(pk=line.pk, health_status=line.health_status).update(**changes)
    for name, value in changes.items():
        setattr(line, name, value)


def canary_for(line: Line) -> str:
    return line.canary_address or _setting("LINE_CANARY_ADDRESS", "")
