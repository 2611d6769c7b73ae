"""Warm-up: a line new to sending (or back from quarantine) opens few conversations
at first and more each day, so the carrier sees a young account behave like a
person rather than a blast.

The new-conversation cap follows a straight line over UTC days (the days usage
counts in): the workspace's start cap on day 1, the line's own cap on the last day,
equal steps between, rounded down. From the day after the last one the line's own
cap applies and the warm-up is over. A line whose own cap is below the start cap
never goes above its own. Only new conversations are held back: a warming line
still answers the people it already talks to, up to its total-messages cap.

The curve is read from the workspace's settings each time (a change applies to
lines already warming, from their current day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from lines.models import Line, LinePolicy


@dataclass(frozen=True)
class Policy:
    warmup_start_cap: int
    warmup_days: int
    gap_jitter_percent: int
    spread_over_window: bool = True


def default_policy() -> Policy:
    return Policy(
        warmup_start_cap=max(0, settings.LINE_WARMUP_START_CAP),
        warmup_days=max(0, settings.LINE_WARMUP_DAYS),
        gap_jitter_percent=min(100, max(0, settings.SEND_GAP_JITTER_PERCENT)),
        spread_over_window=settings.SEND_SPREAD_OVER_WINDOW,
    )


def _from_row(row: LinePolicy) -> Policy:
    return Policy(
        row.warmup_start_cap, row.warmup_days, row.gap_jitter_percent, row.spread_over_window
    )


def policy_for(workspace_id: str) -> Policy:
    """The workspace's line policy (the global defaults when it has none)."""
    row = LinePolicy.objects.filter(workspace_id=workspace_id).first()
    return default_policy() if row is None else _from_row(row)


def policies_for(workspace_ids) -> dict[str, Policy]:
    """{workspace id: policy} for these workspaces, in one query."""
    ids = set(workspace_ids)
    found = {row.workspace_id: _from_row(row) for row in LinePolicy.objects.filter(pk__in=ids)}
    default = default_policy()
    return {workspace_id: found.get(workspace_id, default) for workspace_id in ids}


def curve_cap(*, day: int, days: int, start_cap: int, line_cap: int) -> int:
    """The new-conversation cap on warm-up day `day` (1-based) of `days`."""
    if day >= days or start_cap >= line_cap:
        return line_cap
    day = max(1, day)
    return start_cap + (line_cap - start_cap) * (day - 1) // (days - 1)


@dataclass(frozen=True)
class WarmupState:
    started_at: datetime
    day: int
    days: int
    cap_today: int


def _utc_day_number(started_at: datetime, now: datetime) -> int:
    return (now.astimezone(UTC).date() - started_at.astimezone(UTC).date()).days + 1


def warmup_state(
    *, started_at: datetime | None, line_cap: int, policy: Policy, now: datetime | None = None
) -> WarmupState | None:
    """Where a warm-up begun at `started_at` stands today; None when the line is not
    warming (never started, ended, past its last day, or warm-up off)."""
    if started_at is None or policy.warmup_days <= 0:
        return None
    day = _utc_day_number(started_at, now or timezone.now())
    if day > policy.warmup_days:
        return None
    cap = curve_cap(
        day=day, days=policy.warmup_days, start_cap=policy.warmup_start_cap, line_cap=line_cap
    )
    return WarmupState(started_at=started_at, day=day, days=policy.warmup_days, cap_today=cap)


def line_warmup(line: Line, *, now: datetime | None = None, policy: Policy | None = None):
    """The line's warm-up today, or None."""
    if line.warmup_started_at is None:
        return None
    return warmup_state(
        started_at=line.warmup_started_at,
        line_cap=line.daily_new_conversations_limit,
        policy=policy or policy_for(line.workspace_id),
        now=now,
    )


def new_conversations_cap(
    line: Line, *, now: datetime | None = None, policy: Policy | None = None
) -> int:
    """The new-conversation cap that applies to the line today: its warm-up cap
    while warming, else its own."""
    state = line_warmup(line, now=now, policy=policy)
    return line.daily_new_conversations_limit if state is None else state.cap_today


def start_warmup(line: Line, *, now: datetime | None = None) -> bool:
    """Start the line's warm-up over from day 1 (a new line, or one released from
    quarantine); False, and nothing changed, when the workspace has warm-up off.

    Safe inside the caller's transaction: one UPDATE of the line row."""
    if policy_for(line.workspace_id).warmup_days <= 0:
        return False
    now = now or timezone.now()
    Line.objects.filter(pk=line.pk).update(warmup_started_at=now, updated_at=now)
    line.warmup_started_at = now
    return True
