"""Which lead hears from which line, and how many first messages each line gets today.

* A lead keeps one line for the whole campaign (`Enrollment.line`, copied onto
  every message of the enrollment and pinned there, so the dispatcher sends
  from it). Lines are handed out round robin over the campaign's usable lines
  (active and not down).
* A lead not contacted yet (its first step still waiting) whose line is down or
  inactive moves to a usable line; a lead already contacted stays, and its next
  steps wait for its line. When no line is usable nothing moves and nothing is
  released: the campaign waits and picks up by itself on the next tick after a
  line comes back. Moving only touches waiting rows under row locks, so a row
  the dispatcher already claimed is never moved or sent twice.
* First steps are released (see campaigns.sequencing) per line, at most the
  line's remaining daily room (new conversations and total messages, minus
  first steps already released and not yet sent), oldest campaign first. That
  is how older campaigns get first claim on shared lines. The dispatcher still
  enforces the caps, windows and gaps itself; the gate only decides who is
  next, and keeps the outbox from filling with rows that would only be
  rescheduled.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import Campaign, Enrollment
from campaigns.sequencing import HELD, WAITING
from lines.models import Line
from lines.services import usage_for
from messaging.models import Message

# At most this many first steps leave the gate per line and tick.
RELEASE_BATCH = 500
# Bulk enrollment spreads first send times over (at most) this much to fix their
# order; the gate treats the whole spread as due.
ORDER_SPREAD = timedelta(seconds=1)
ASSIGN_BATCH = 2000


def campaign_line_pool(campaign: Campaign) -> list[Line]:
    """The campaign's lines (every line of the workspace when it names none)."""
    lines = list(campaign.lines.all())
    if not lines:
        lines = list(Line.objects.filter(workspace_id=campaign.workspace_id))
    return sorted(lines, key=lambda line: (line.created_at, line.pk))


def usable_lines(campaign: Campaign) -> list[Line]:
    return [line for line in campaign_line_pool(campaign) if line.is_usable]


def round_robin(campaign: Campaign, lines: list[Line]):
    """An endless cycle over `lines`, starting with the one carrying the fewest leads."""
    return itertools.cycle(rotation(campaign, lines))


def rotation(campaign: Campaign, lines: list[Line]) -> list[Line]:
    """`lines` rotated to start with the one carrying the fewest of the campaign's leads."""
    if not lines:
        return []
    counts = dict(
        Enrollment.objects.filter(campaign_id=campaign.pk, line_id__in=[x.pk for x in lines])
        .values_list("line_id")
        .annotate(n=Count("pk"))
        .values_list("line_id", "n")
    )
    start = min(range(len(lines)), key=lambda i: (counts.get(lines[i].pk, 0), i))
    return lines[start:] + lines[:start]


def assign_lines(*, campaign: Campaign) -> int:
    """Give every not-yet-contacted lead without a usable line one; returns how many moved."""
    lines = usable_lines(campaign)
    if not lines:
        return 0
    usable_ids = [line.pk for line in lines]
    moved = 0
    while True:
        with transaction.atomic():
            firsts = list(
                Message.objects.select_for_update(skip_locked=True)
                .filter(campaign_id=campaign.pk, step_index=0, status__in=WAITING)
                .filter(Q(line__isnull=True) | ~Q(line_id__in=usable_ids))
                .values_list("lead_id", flat=True)[:ASSIGN_BATCH]
            )
            if not firsts:
                return moved
            by_line = defaultdict(list)
            for lead_id, line in zip(firsts, round_robin(campaign, lines), strict=False):
                by_line[line.pk].append(lead_id)
            for line_id, lead_ids in by_line.items():
                Message.objects.filter(
                    campaign_id=campaign.pk, lead_id__in=lead_ids, status__in=WAITING
                ).update(line_id=line_id, line_pinned=True)
                Enrollment.objects.filter(campaign_id=campaign.pk, lead_id__in=lead_ids).update(
                    line_id=line_id
                )
            moved += len(firsts)
        if len(firsts) < ASSIGN_BATCH:
            return moved


def _line_room(line: Line, now: datetime) -> int:
    usage = usage_for(line=line, now=now)
    room = min(
        line.daily_new_conversations_limit - usage.new_conversations_count,
        line.daily_total_messages_limit - usage.total_messages_count,
    )
    in_flight = Message.objects.filter(
        line_id=line.pk,
        step_index=0,
        status__in=("pending", "scheduled", "sending"),
        due_at__lt=HELD,
    ).exclude(campaign_id="")
    return max(0, min(room - in_flight.count(), RELEASE_BATCH))


def release_first_steps(*, campaigns: list[Campaign], now: datetime | None = None) -> list[str]:
    """Let first steps through the gate, oldest campaign first; returns the released ids.

    `campaigns` must be locked and active, in priority order.
    """
    now = now or timezone.now()
    room: dict[str, int] = {}
    released: list[str] = []
    for campaign in campaigns:
        for line in usable_lines(campaign):
            if line.pk not in room:
                room[line.pk] = _line_room(line, now)
            if room[line.pk] <= 0:
                continue
            ids = list(
                Message.objects.filter(
                    campaign_id=campaign.pk,
                    line_id=line.pk,
                    step_index=0,
                    status="scheduled",
                    due_at=HELD,
                    scheduled_date__lte=now + ORDER_SPREAD,
                )
                .order_by("scheduled_date", "pk")
                .values_list("pk", flat=True)[: room[line.pk]]
            )
            if not ids:
                continue
            count = Message.objects.filter(pk__in=ids, status="scheduled", due_at=HELD).update(
                status="pending", due_at=now, updated_at=now
            )
            room[line.pk] -= count
            released.extend(ids)
    return released
