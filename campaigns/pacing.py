"""Which lead hears from which line, and how many first messages each line gets today.

* A lead keeps one line for the whole campaign (`Enrollment.line`, copied onto
  every message of the enrollment and pinned there, so the dispatcher sends
  from it). A lead that already has a conversation on one of the campaign's
  usable lines (active and not down) keeps that line; the others are handed
  out round robin over the usable lines (campaigns.enrollment).
* A lead not contacted yet (its first step still waiting) whose line is down or
  inactive moves to a usable line; a lead already contacted stays, and its next
  steps wait for its line. When no line is usable nothing moves and nothing is
  released: the campaign waits and picks up by itself on the next tick after a
  line comes back. Moving only touches waiting rows under row locks, so a row
  the dispatcher already claimed is never moved or sent twice.
* First steps are released (see campaigns.sequencing) per line, at most the
  line's remaining daily room (new conversations and total messages, minus
  first steps already released and not yet sent), oldest campaign first. That
  is how older campaigns get first claim on shared lines.
* Released first steps are spread over the campaign's send window (the rest of
  today's, or the next one when it is closed): the window is cut into as many
  slots as the line can send today and each release takes the next slot, at a
  random point within it, so a line's sends cover its window instead of
  bursting at the opening (a workspace setting, LinePolicy.spread_over_window).
* Round robin deals leads out evenly, but lines have different limits: once a
  line has no room left today, its leads not contacted yet (first step still
  held) move to a line of the campaign that has room, so the campaign runs at
  the sum of its lines' limits rather than at the smallest one's pace. A lead
  that already talks to its line (a conversation on it) stays. The dispatcher still
  enforces the caps, windows and gaps itself; the gate only decides who is
  next, and keeps the outbox from filling with rows that would only be
  rescheduled.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from campaigns.models import Campaign, Enrollment
from campaigns.sequencing import WAITING, stop_leads, stop_reasons
from lines import warmup
from lines.budget import halve
from lines.models import Line
from lines.services import usage_for
from lines.warmup import new_conversations_cap
from messaging import schedule
from messaging.models import Conversation, Message

# At most this many first steps leave the gate per line and tick.
RELEASE_BATCH = 500
# Bulk enrollment spreads first send times over (at most) this much to fix their
# order; the gate treats the whole spread as due.
ORDER_SPREAD = timedelta(seconds=1)
ASSIGN_BATCH = 2000
# Spread sends end this long (at most a tenth of the window) before it closes: one
# due in the last seconds could be pushed past the close by a device gap or a busy
# worker, and would then wait for the next window.
SPREAD_END_MARGIN = timedelta(minutes=10)
# Where the spread draws from (tests seed it).
SPREAD_RNG = random.Random()


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
                Message.objects.select_for_update(no_key=True, skip_locked=True)
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


class _Room:
    """What a line can still take: today (its caps, less first steps released and not
    sent yet) and this tick (RELEASE_BATCH)."""

    def __init__(self, line: Line, now: datetime):
        usage = usage_for(line=line, now=now)
        halved = line.caps_halved(now)  # line safety's answer to a medium spam risk
        left = min(
            halve(new_conversations_cap(line, now=now), halved) - usage.new_conversations_count,
            halve(line.daily_total_messages_limit, halved) - usage.total_messages_count,
        )
        in_flight = Message.objects.filter(
            line_id=line.pk,
            step_index=0,
            status__in=("pending", "scheduled", "sending"),
            held=False,
        ).exclude(campaign_id="")
        self.today = max(0, left - in_flight.count())
        self.tick = RELEASE_BATCH
        # What the line could send today, before this tick: the slots a window's
        # sends are spread over (spread_times).
        self.capacity = self.today

    @property
    def free(self) -> int:
        return min(self.today, self.tick)

    def take(self, count: int) -> None:
        self.today -= count
        self.tick -= count


def release_first_steps(
    *, campaigns: list[Campaign], now: datetime | None = None, rng: random.Random | None = None
) -> list[str]:
    """Let first steps through the gate, oldest campaign first; returns the released ids.

    `campaigns` must be locked and active, in priority order. A lead who replied
    since enrolling (replyBehavior "stop"), opted out or went on the
    do-not-contact list is stopped here instead (its steps cancelled with the
    reason): a reply that came in while its first step was written, or before the
    gate, must not be answered by a first message.
    """
    now = now or timezone.now()
    rooms: dict[str, _Room] = {}
    released: list[str] = []
    for campaign in campaigns:
        lines = usable_lines(campaign)
        for line in lines:
            if line.pk not in rooms:
                rooms[line.pk] = _Room(line, now)
            released.extend(_release_on_line(campaign, line, rooms[line.pk], now, rng))
        released.extend(_spill_over(campaign, lines, rooms, now, rng))
    return released


def _spill_over(
    campaign: Campaign, lines: list[Line], rooms: dict, now: datetime, rng=None
) -> list[str]:
    """Move first steps waiting on lines with no room left today to the campaign's
    lines that still have some, and release them there."""
    full = [line.pk for line in lines if rooms[line.pk].today <= 0]
    released: list[str] = []
    if not full:
        return released
    talks = Conversation.objects.filter(
        workspace_id=campaign.workspace_id, lead_id=OuterRef("lead_id"), line_id=OuterRef("line_id")
    )
    for target in lines:
        room = rooms[target.pk]
        # A pass moves at most the room left; more passes when some of the moved
        # leads turned out to be stopped.
        for _ in range(3):
            if room.free <= 0:
                break
            lead_ids = list(
                _due_firsts(campaign, now)
                .filter(line_id__in=full)
                .exclude(Exists(talks))
                .order_by("scheduled_date", "pk")
                .values_list("lead_id", flat=True)[: room.free]
            )
            if not lead_ids:
                return released
            _move_leads(campaign, lead_ids, target.pk)
            released.extend(_release_on_line(campaign, target, room, now, rng))
    return released


def _move_leads(campaign: Campaign, lead_ids: list[str], line_id: str) -> None:
    """Give these not-yet-contacted leads another line (their rows are all held)."""
    Message.objects.filter(
        campaign_id=campaign.pk, lead_id__in=lead_ids, status__in=WAITING
    ).update(line_id=line_id, line_pinned=True)
    Enrollment.objects.filter(campaign_id=campaign.pk, lead_id__in=lead_ids).update(line_id=line_id)


def _due_firsts(campaign: Campaign, now: datetime):
    return Message.objects.filter(
        campaign_id=campaign.pk,
        step_index=0,
        status="scheduled",
        held=True,
        scheduled_date__lte=now + ORDER_SPREAD,
    )


def _release(
    campaign: Campaign, line: Line, room: _Room, ids: list[str], now: datetime, rng
) -> int:
    """Let these first steps go: due now, or, with the workspace's spreading on, each
    at its own time across the send window (spread_times). Returns how many went."""
    held = Message.objects.filter(pk__in=ids, status="scheduled", held=True)
    if not warmup.policy_for(campaign.workspace_id).spread_over_window:
        return held.update(status="pending", held=False, due_at=now, updated_at=now)
    try:
        opens, closes = schedule.allowed_span(
            now,
            campaign.timezone or campaign.workspace.timezone or "UTC",
            campaign.send_window_start or None,
            campaign.send_window_end or None,
            campaign.allowed_days or None,
        )
    except ValueError:
        return held.update(status="pending", held=False, due_at=now, updated_at=now)
    # The slots already given out today on this line come first.
    first_slot = room.capacity - room.today
    times = spread_times(
        opens, closes, count=len(ids), slots=room.capacity, first_slot=first_slot, rng=rng
    )
    due_at = dict(zip(ids, times, strict=True))
    with transaction.atomic():
        # Only rows still held are released (the guard of every release); locked, so
        # the per-row updates below need no guard of their own.
        locked = held.select_for_update(no_key=True, of=("self",)).values_list("pk", flat=True)
        locked = list(locked)
        _set_due_times([(pk, due_at[pk]) for pk in locked], now)
    return len(locked)


def _set_due_times(rows: list[tuple[str, datetime]], now: datetime) -> None:
    """Release these locked rows, each due at its own time: one UPDATE by primary key
    per row, sent together (the driver pipelines them), cheaper than bulk_update's
    CASE expressions for a tick's hundreds of rows."""
    if not rows:
        return
    quote = connection.ops.quote_name
    meta = Message._meta
    columns = {name: quote(meta.get_field(name).column) for name in
               ("status", "held", "due_at", "scheduled_date", "updated_at")}  # fmt: skip
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {columns['status']} = %s, "  # noqa: S608
        f"{columns['held']} = %s, {columns['due_at']} = %s, {columns['scheduled_date']} = %s, "
        f"{columns['updated_at']} = %s WHERE {quote(meta.pk.column)} = %s"
    )
    adapt = connection.ops.adapt_datetimefield_value
    params = [("scheduled", False, adapt(due), adapt(due), adapt(now), pk) for pk, due in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def spread_times(
    opens: datetime,
    closes: datetime,
    *,
    count: int,
    slots: int,
    first_slot: int = 0,
    rng: random.Random | None = None,
) -> list[datetime]:
    """`count` send times in [opens, closes): the window (less its end margin) cut
    into `slots` equal slots (what the line can send in it), one send per slot from
    `first_slot` on, at a random point of its slot. So a line's day of sends covers
    its window evenly whether few or many are due, and never bunches at the opening."""
    rng = rng or SPREAD_RNG
    slots = max(slots, first_slot + count, 1)
    closes -= min(SPREAD_END_MARGIN, (closes - opens) / 10)
    width = (closes - opens) / slots
    times = []
    for index in range(first_slot, first_slot + count):
        times.append(min(opens + width * (index + rng.random()), closes - timedelta(seconds=1)))
    return [max(t, opens) for t in times]


def _release_on_line(
    campaign: Campaign, line: Line, room: _Room, now: datetime, rng=None
) -> list[str]:
    released: list[str] = []
    # Each pass either releases rows or cancels stopped ones, so a few passes fill
    # the room; the bound only guards against a surprise.
    for _ in range(10):
        want = room.free
        if want <= 0:
            break
        rows = list(
            _due_firsts(campaign, now)
            .filter(line_id=line.pk)
            .order_by("scheduled_date", "pk")
            .values_list("pk", "lead_id")[:want]
        )
        if not rows:
            break
        reasons = stop_reasons(campaign, {lead_id for _, lead_id in rows})
        if reasons:
            stop_leads(campaign=campaign, reasons=reasons, now=now)
        ids = [pk for pk, lead_id in rows if lead_id not in reasons]
        if ids:
            count = _release(campaign, line, room, ids, now, rng)
            room.take(count)
            released.extend(ids)
        if len(rows) < want:
            break
    return released
