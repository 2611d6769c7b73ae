"""The dispatcher: claims due outbox rows and applies the pre-send checks.

One short transaction claims a batch with `SELECT ... FOR UPDATE SKIP LOCKED`
(concurrent dispatchers take disjoint rows), decides each row, and commits:

- do-not-contact, opted out, or (stop-on-reply) the lead replied since the
  message was written -> `cancelled` (reason recorded);
- outside the send window / on a day not allowed -> `scheduled` at the next
  allowed instant (messaging.schedule);
- the same message (rendered text, subject and attachments) to the same
  recipient less than DUPLICATE_WINDOW ago -> `cancelled` ("duplicate"): the
  later of two identical sends is dropped;
- frequency cap: a lead who already got the workspace's cap of messages in the
  last 24 hours / 7 days -> `scheduled` for when one more fits, with the reason
  in `hold_reason` (messaging.frequency, which also says who is exempt);
- contact gap: two sends to one recipient address (per workspace) are about
  the sending line's `contact_gap_seconds` apart (± the workspace's gap jitter,
  lines.jitter; the device gap carries it too); the earlier send's dispatch
  time counts. Otherwise `scheduled` for when the gap ends;
- a line (iMessage): the pinned line (`fromLineId` / a campaign's choice), else
  the line the lead's conversation already uses, else round robin over active,
  not-down lines, least recently used first. The line's daily total-messages
  cap and, for a recipient it has no chat with yet, its new-conversations cap
  are taken, then its device gap is claimed (from the batch's lines.budget
  SendBudget: the lines' rows locked in line order with SKIP LOCKED, their
  counters taken in memory and written back once; a line another batch or an
  availability check holds is busy and looked at again a second later). No
  line can take it -> `scheduled` for the soonest gap end, or the next UTC
  midnight when every cap is spent. A row that may take any of the workspace's
  lines and finds every one in its device gap queues for a line: it is due one
  gap's share (the shortest device gap, less its jitter, over the number of those
  lines) after the last row queued before it (`queued_for_line`), so each time a
  line frees up one row comes due, rather than every waiting row at every gap end.
  A queued row that comes due before a line is free waits for the soonest gap end,
  keeping its place.

Rows that pass become `sending` and their ids go to the send task after commit.
None of the waits is an error. The recipient rows (RecipientGate) are locked in
address order and the lines without waiting, so two dispatchers never deadlock
on them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from lines import services as line_services
from lines.budget import SendBudget
from lines.jitter import gap_end
from lines.models import Line
from messaging import frequency, schedule, templating
from messaging.dnc import dnc_blocked_pairs
from messaging.leases import QUEUED_LEASE
from messaging.models import Conversation, Message, RecipientGate
from messaging.sending import messages_queue_send
from messaging.services import status_changed_on_commit

logger = logging.getLogger(__name__)

BATCH_SIZE = 100
DUPLICATE_WINDOW = timedelta(seconds=60)
# How long to wait before looking again when no line exists or the pinned one is down.
NO_LINE_RETRY = timedelta(minutes=1)


@dataclass
class DispatchResult:
    sending: list[str] = field(default_factory=list)
    waiting: dict[str, datetime] = field(default_factory=dict)
    cancelled: dict[str, str] = field(default_factory=dict)

    @property
    def claimed(self) -> int:
        return len(self.sending) + len(self.waiting) + len(self.cancelled)


@dataclass
class _Decision:
    action: str  # send | wait | cancel
    line: Line | None = None
    until: datetime | None = None
    reason: str = ""
    new_conversation: bool = False
    usage_taken: bool = False
    # Shown on a waiting row (Message.hold_reason) until it goes.
    hold: str = ""
    # Waiting in the workspace's queue for a line (Message.queued_for_line).
    queued: bool = False


def recipient_key(message: Message) -> str:
    """The address a message is addressed to, for the contact gap and duplicates."""
    if message.message_type == Message.Type.EMAIL:
        return message.recipient_email or (message.lead.email if message.lead else "")
    return (
        message.recipient_phone
        or message.recipient_email
        or (message.lead.phone or message.lead.email if message.lead else "")
    )


def render_for(message: Message, line: Line | None) -> str:
    """The text as far as the dispatcher can know it: API tool variables take their
    fallback here (no network call under the batch's locks); the send task renders
    them with the tools' answers right before the channel is called."""
    return templating.render_message(message, line)


def dispatch_due(
    *, now: datetime | None = None, limit: int = BATCH_SIZE, message_ids=None
) -> DispatchResult:
    """Claim up to `limit` due rows (or just `message_ids`, when due) and decide them."""
    now = now or timezone.now()
    result = DispatchResult()
    with transaction.atomic():
        rows = Message.objects.select_for_update(
            no_key=True, skip_locked=True, of=("self",)
        ).filter(status__in=Message.WAITING, held=False, due_at__lte=now)
        if message_ids is not None:
            rows = rows.filter(pk__in=list(message_ids))
        rows = list(
            rows.select_related("workspace", "lead", "line").order_by("due_at", "created_at")[
                :limit
            ]
        )
        if not rows:
            return result
        batch = _Batch(now)
        batch.prepare(rows)
        for message in sorted(rows, key=lambda m: (m.workspace_id, recipient_key(m), m.due_at)):
            decision = batch.decide(message)
            _apply(message, decision, now, result)
        batch.save(rows, result)
        if result.sending:
            sending = list(result.sending)
            transaction.on_commit(lambda: _queue_sends(sending), robust=True)
    return result


def messages_wake_for_line(*, workspace_id: str, now: datetime | None = None) -> int:
    """A line of the workspace came back (healthy again, added, activated): the rows
    that wait NO_LINE_RETRY for a usable line are due now instead. Every iMessage row
    due within NO_LINE_RETRY and held by nothing the dispatcher names (`hold_reason`)
    is pulled forward; the dispatcher decides each again, so one that waits for
    something else (a gap, a backoff) is simply scheduled again. The rows queued for
    a line are due now as well and leave the queue: the dispatcher queues them again,
    in the order they were written, spaced for the lines there are now. Returns how
    many."""
    now = now or timezone.now()
    requeued = Message.objects.filter(
        workspace_id=workspace_id, status__in=Message.WAITING, held=False, queued_for_line=True
    ).update(due_at=now, queued_for_line=False)
    return requeued + Message.objects.filter(
        workspace_id=workspace_id,
        status__in=Message.WAITING,
        held=False,
        hold_reason="",
        message_type=Message.Type.IMESSAGE,
        due_at__gt=now,
        due_at__lte=now + NO_LINE_RETRY,
    ).update(due_at=now)


def on_line_capacity_changed(sender, workspace_id, **kwargs):
    """Receiver of lines.signals.line_capacity_changed (sent on commit)."""
    messages_wake_for_line(workspace_id=workspace_id)


def _queue_sends(message_ids: list[str]) -> None:
    """After the commit: the send tasks, or the rows back to `pending` when the broker
    cannot take them (messaging.sending.messages_queue_send)."""
    messages_queue_send(message_ids=message_ids)


def _apply(message: Message, decision: _Decision, now: datetime, result: DispatchResult) -> None:
    """Set the decision on the row in memory; _Batch.save writes the batch at once."""
    message.updated_at = now
    if decision.action == "send":
        message.status = Message.Status.SENDING
        message.line = decision.line
        message.sending_started_at = now
        message.usage_taken_at = now if decision.usage_taken else None
        message.is_new_conversation = decision.new_conversation
        message.hold_reason = ""
        message.send_claimed_at = None
        message.channel_called_at = None
        message.lease_expires_at = now + QUEUED_LEASE
        message.queued_for_line = False
        result.sending.append(message.pk)
    elif decision.action == "wait":
        message.status = Message.Status.SCHEDULED
        message.due_at = decision.until
        message.scheduled_date = decision.until
        message.hold_reason = decision.hold[:200]
        message.queued_for_line = decision.queued
        result.waiting[message.pk] = decision.until
    else:
        message.status = Message.Status.CANCELLED
        message.cancel_reason = decision.reason[:200]
        message.queued_for_line = False
        status_changed_on_commit(
            message_id=message.pk, status=Message.Status.CANCELLED, campaign_id=message.campaign_id
        )
        result.cancelled[message.pk] = decision.reason


SENDING_FIELDS = [
    "status", "line", "rendered_body", "sending_started_at", "usage_taken_at",
    "is_new_conversation", "hold_reason", "send_claimed_at", "channel_called_at",
    "lease_expires_at", "queued_for_line", "updated_at",
]  # fmt: skip
WAITING_FIELDS = [
    "status", "due_at", "scheduled_date", "hold_reason", "queued_for_line", "updated_at",
]  # fmt: skip
CANCELLED_FIELDS = ["status", "cancel_reason", "queued_for_line", "updated_at"]
RECENT_STATUSES = ("sending", "sent", "delivered", "read")


def duplicate_key(
    workspace_id, message_type, phone, email, body, subject="", attachment_urls=()
) -> tuple:
    """Two sends are the same when type, recipient, rendered text, subject and
    attachments are (two photos with no text are two different messages)."""
    content = (body, subject or "", tuple(attachment_urls or ()))
    if message_type == Message.Type.EMAIL:
        return (workspace_id, message_type, "", email, *content)
    return (workspace_id, message_type, phone, "" if phone else email, *content)


def duplicate_key_of(message: Message) -> tuple:
    return duplicate_key(
        message.workspace_id,
        message.message_type,
        message.recipient_phone,
        message.recipient_email,
        message.rendered_body,
        message.subject,
        message.attachment_urls,
    )


def _update_rows(model, rows: list, fields: list[str]) -> None:
    """Write `fields` of these (locked) rows: one UPDATE by primary key per row, sent
    together (the driver pipelines them). bulk_update's CASE expressions would cost
    more Python than deciding the whole batch."""
    if not rows:
        return
    quote = connection.ops.quote_name
    columns = [model._meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in columns)
    pk = model._meta.pk
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(pk.column)} = %s"  # noqa: S608
    params = [
        [f.get_db_prep_save(getattr(row, f.attname), connection) for f in columns]
        + [pk.get_db_prep_value(row.pk, connection)]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


class _Batch:
    """One claimed batch: what it needs is read with a few queries up front
    (prepare), each row is decided in memory plus the conditional cap / gap
    updates, and the rows are written back together (save)."""

    def __init__(self, now: datetime):
        self.now = now
        self._lines: dict[str, list[Line]] = {}
        self._gates: dict[tuple[str, str], RecipientGate] = {}
        self._touched: dict[int, RecipientGate] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._recent: set[tuple] = set()
        self._lead_line: dict[tuple[str, str], Line] = {}
        self._address_line: dict[tuple[str, str], Line] = {}
        self._chats: set[tuple] = set()
        # Frequency cap: the caps of workspaces that have one, and each lead's sends
        # in the last 7 days (this batch's included).
        self._caps: dict[str, frequency.Caps] = {}
        self._lead_sends: dict[tuple[str, str], list[datetime]] = {}
        # Each workspace's queue for a line: when its last queued row is due. Read
        # (for all the batch's iMessage workspaces at once) when a row first queues.
        self._queue_tail: dict[str, datetime] | None = None
        self._imessage_workspaces: list[str] = []
        self.budget: SendBudget | None = None

    def prepare(self, rows: list[Message]) -> None:
        """Read what the batch needs: a few queries for all its workspaces together
        (a batch usually holds one or two rows of each of many workspaces), and the
        recipient gates locked workspace by workspace, each in address order."""
        by_workspace: dict[str, list[Message]] = {}
        for message in rows:
            by_workspace.setdefault(message.workspace_id, []).append(message)
        workspaces = sorted(by_workspace)
        addresses = {
            w: sorted({a for a in map(recipient_key, by_workspace[w]) if a}) for w in workspaces
        }
        phones = sorted({m.recipient_phone for m in rows if m.recipient_phone})
        emails = sorted({m.recipient_email for m in rows if m.recipient_email})
        lead_ids = {
            w: sorted({m.lead_id for m in by_workspace[w] if m.lead_id}) for w in workspaces
        }
        all_lead_ids = sorted({i for ids in lead_ids.values() for i in ids})
        self._caps = frequency.caps_for_many([w for w in workspaces if lead_ids[w]])
        self._caps = {w: caps for w, caps in self._caps.items() if caps.enabled}

        # Rows of another workspace that share a value with this batch are read too;
        # everything is kept by (workspace, value), so they are never consulted.
        self._blocked.update(dnc_blocked_pairs(workspace_ids=workspaces, values=phones + emails))

        # One gate row per recipient, created if missing and locked in address order
        # (the same order in every dispatcher, so two of them cannot deadlock). With a
        # frequency cap, one per lead too, in the same order, before its sends are read.
        for workspace_id in workspaces:
            capped = workspace_id in self._caps
            self._lock_gates(
                workspace_id,
                sorted(
                    set(addresses[workspace_id])
                    | {frequency.lead_gate_key(i) for i in lead_ids[workspace_id] if capped}
                ),
            )

        capped_leads = sorted({i for w in self._caps for i in lead_ids[w]})
        if capped_leads:
            for workspace_id in self._caps:
                for lead_id in lead_ids[workspace_id]:
                    self._lead_sends[(workspace_id, lead_id)] = []
            for workspace_id, lead_id, started in Message.objects.filter(
                workspace_id__in=list(self._caps),
                lead_id__in=capped_leads,
                status__in=frequency.COUNTED,
                sending_started_at__gt=self.now - frequency.WEEK,
            ).values_list("workspace_id", "lead_id", "sending_started_at"):
                self._lead_sends.setdefault((workspace_id, lead_id), []).append(started)

        if phones or emails:
            recent = Message.objects.filter(
                Q(recipient_phone__in=phones) | Q(recipient_email__in=emails),
                workspace_id__in=workspaces,
                status__in=RECENT_STATUSES,
                sending_started_at__gte=self.now - DUPLICATE_WINDOW,
            ).values_list(
                "workspace_id", "message_type", "recipient_phone", "recipient_email",
                "rendered_body", "subject", "attachment_urls",
            )  # fmt: skip
            self._recent.update(duplicate_key(*row) for row in recent)

        all_addresses = sorted({a for values in addresses.values() for a in values})
        if all_lead_ids or all_addresses:
            conversations = (
                Conversation.objects.filter(workspace_id__in=workspaces, line__isnull=False)
                .filter(Q(lead_id__in=all_lead_ids) | Q(address__in=all_addresses))
                .select_related("line")
                .order_by("created_at")
            )
            for conversation in conversations:
                workspace_id, line = conversation.workspace_id, conversation.line
                if conversation.lead_id:
                    self._lead_line.setdefault((workspace_id, conversation.lead_id), line)
                    self._chats.add((line.pk, "lead", conversation.lead_id))
                self._address_line.setdefault((workspace_id, conversation.address), line)
                self._chats.add((line.pk, "address", conversation.address))

        imessage_workspaces = sorted(
            {m.workspace_id for m in rows if m.message_type == Message.Type.IMESSAGE}
        )
        line_ids = []
        if imessage_workspaces:
            for workspace_id in imessage_workspaces:
                self._lines[workspace_id] = []
            # Every line of these workspaces, in round-robin order; the ones in
            # rotation are the candidates, and all of them are the budget's.
            for line in Line.objects.filter(workspace_id__in=imessage_workspaces).order_by(
                F("last_sent_at").asc(nulls_first=True), "created_at"
            ):
                line_ids.append(line.pk)
                if line.is_active and line.health_status not in Line.OUT_OF_ROTATION:
                    self._lines[line.workspace_id].append(line)
        self._imessage_workspaces = imessage_workspaces
        self.budget = SendBudget(line_ids, self.now)

    def _lock_gates(self, workspace_id: str, gated: list[str]) -> None:
        if not gated:
            return
        RecipientGate.objects.bulk_create(
            [RecipientGate(workspace_id=workspace_id, address=a) for a in gated],
            ignore_conflicts=True,
        )
        for gate in (
            RecipientGate.objects.select_for_update(no_key=True, of=("self",))
            .select_related("last_line")
            .filter(workspace_id=workspace_id, address__in=gated)
            .order_by("address")
        ):
            self._gates[(workspace_id, gate.address)] = gate

    def save(self, rows: list[Message], result: DispatchResult) -> None:
        groups = (
            ([m for m in rows if m.pk in set(result.sending)], SENDING_FIELDS),
            ([m for m in rows if m.pk in result.waiting], WAITING_FIELDS),
            ([m for m in rows if m.pk in result.cancelled], CANCELLED_FIELDS),
        )
        for messages, fields in groups:
            _update_rows(Message, messages, fields)
        _update_rows(RecipientGate, list(self._touched.values()), ["last_sent_at", "last_line"])
        if self.budget is not None:
            self.budget.save()

    # Decisions

    def decide(self, message: Message) -> _Decision:
        now = self.now
        # A cancel that ran while this row was rescheduled, or a reply recorded since
        # (the send task looks again right before it sends).
        stop = message.lead_stop_reason()
        if stop:
            return _Decision("cancel", reason=stop)
        for value in (message.recipient_phone, message.recipient_email):
            if value and (message.workspace_id, value) in self._blocked:
                return _Decision("cancel", reason=f"{value} is on the do-not-contact list")

        zone = message.timezone or message.workspace.timezone or "UTC"
        try:
            allowed_at = schedule.next_allowed_time(
                now,
                zone,
                message.send_window_start or None,
                message.send_window_end or None,
                message.allowed_days or None,
            )
        except ValueError:
            logger.warning("Message %s has an unusable send window; sending anytime", message.pk)
            allowed_at = now
        if allowed_at > now:
            return _Decision("wait", until=allowed_at, reason="send window")

        held = self._frequency_hold(message)
        if held is not None:
            until, why = held
            return _Decision("wait", until=until, reason="frequency cap", hold=why)

        address = recipient_key(message)
        gate = self._gates.get((message.workspace_id, address)) if address else None

        line = None
        if message.message_type == Message.Type.IMESSAGE:
            line = message.line  # only for the placeholder; the real pick comes below
        message.rendered_body = render_for(message, line)
        key = duplicate_key_of(message)
        if key in self._recent:
            return _Decision(
                "cancel",
                reason="Duplicate: the same message went to this recipient less than 60 "
                "seconds ago",
            )

        if message.message_type != Message.Type.IMESSAGE:
            decision = _Decision("send")
        else:
            decision = self._pick_line(message, address, gate)
            if decision.action == "send" and decision.line != line:
                message.rendered_body = render_for(message, decision.line)
                key = duplicate_key_of(message)
        if decision.action == "send":
            self._recent.add(key)
            sends = self._lead_sends.get((message.workspace_id, message.lead_id))
            if sends is not None:
                sends.append(now)
            self._touch_gate(gate, decision.line)
            if decision.line is not None:
                self._remember_chat(message, address, decision.line)
        return decision

    def _frequency_hold(self, message: Message) -> tuple[datetime, str] | None:
        """(until, why) when the workspace's frequency cap holds this message back."""
        caps = self._caps.get(message.workspace_id)
        if caps is None or not message.lead_id:
            return None
        lead = message.lead
        if lead.replied_at and lead.replied_at >= self.now - frequency.CONVERSATION_WINDOW:
            return None  # answering a conversation; it still counts
        sends = self._lead_sends.get((message.workspace_id, message.lead_id), [])
        return frequency.held_until(sends, caps, self.now)

    def _remember_chat(self, message: Message, address: str, line: Line) -> None:
        """Later rows of this batch see the thread this send is about to open."""
        if message.lead_id:
            self._lead_line.setdefault((message.workspace_id, message.lead_id), line)
            self._chats.add((line.pk, "lead", message.lead_id))
        if address:
            self._address_line.setdefault((message.workspace_id, address), line)
            self._chats.add((line.pk, "address", address))

    # Recipients

    def _touch_gate(self, gate: RecipientGate | None, line: Line | None) -> None:
        if gate is None:
            return
        gate.last_sent_at = self.now
        if line is not None:
            gate.last_line = line
        self._touched[gate.pk] = gate

    # Lines

    def _workspace_lines(self, workspace_id: str) -> list[Line]:
        return self._lines.get(workspace_id, [])

    def _conversation_line(
        self, message: Message, address: str, gate: RecipientGate | None
    ) -> Line | None:
        """The line this recipient already talks to: its conversation's, or the line
        of a send still in flight (the gate remembers it before a conversation exists)."""
        if message.lead_id:
            line = self._lead_line.get((message.workspace_id, message.lead_id))
            if line is not None:
                return line
        line = self._address_line.get((message.workspace_id, address)) if address else None
        if line is None and gate is not None and gate.last_line_id:
            line = gate.last_line
        return line

    def _has_chat(self, message: Message, address: str, line: Line) -> bool:
        if message.lead_id and (line.pk, "lead", message.lead_id) in self._chats:
            return True
        return (line.pk, "address", address) in self._chats

    def _pick_line(self, message: Message, address: str, gate: RecipientGate | None) -> _Decision:
        now = self.now
        any_line = False
        if message.line_pinned and message.line_id:
            candidates = [message.line]
            if not message.line.is_usable:
                return _Decision("wait", until=now + NO_LINE_RETRY, reason="pinned line down")
        else:
            kept = self._conversation_line(message, address, gate)
            if kept is not None and kept.is_active:
                if not kept.is_usable:
                    return _Decision("wait", until=now + NO_LINE_RETRY, reason="line down")
                candidates = [kept]
            else:
                candidates = list(self._workspace_lines(message.workspace_id))
                any_line = True
        if not candidates:
            return _Decision("wait", until=now + NO_LINE_RETRY, reason="no active line")

        waits: list[datetime] = []
        in_device_gap: list[Line] = []
        for line in candidates:
            if gate is not None and gate.last_sent_at is not None and line.contact_gap_seconds:
                gap_ends = gap_end(
                    gate.last_sent_at,
                    line.contact_gap_seconds,
                    self.budget.jitter_percent(message.workspace_id),
                    "recipient",
                    message.workspace_id,
                    gate.address,
                )
                if gap_ends > now:
                    waits.append(gap_ends)
                    continue
            new_conversation = not self._has_chat(message, address, line)
            taken = self.budget.take(line, new_conversation=new_conversation)
            if taken is False:
                continue  # a cap is spent
            if taken is not True:
                waits.append(taken)  # the device gap ends then
                in_device_gap.append(line)
                continue
            # Keep the batch's round robin turning: this line is now the most recent.
            lines = self._lines.get(message.workspace_id)
            if lines and line in lines:
                lines.remove(line)
                lines.append(line)
            return _Decision("send", line=line, new_conversation=new_conversation, usage_taken=True)
        if waits:
            soonest = max(min(waits), now + timedelta(seconds=1))
            if any_line and len(in_device_gap) == len(waits):
                return self._queue_for_line(message, in_device_gap, soonest)
            return _Decision("wait", until=soonest)
        return _Decision("wait", until=line_services.next_utc_midnight(now), reason="caps")

    def _queue_for_line(self, message: Message, lines: list[Line], soonest: datetime) -> _Decision:
        """Every line that could take the row is in its device gap (the others' caps
        are spent): it takes the next place in its workspace's queue, one gap's share
        after the last row queued. One queued already that came due early waits for
        the soonest gap end, ahead of the rows queued after it."""
        if message.queued_for_line:
            return _Decision("wait", until=soonest, queued=True)
        jitter = self.budget.jitter_percent(message.workspace_id)
        share = min(line.device_gap_seconds for line in lines) * (100 - jitter) / 100 / len(lines)
        if self._queue_tail is None:
            self._queue_tail = dict(
                Message.objects.filter(
                    workspace_id__in=self._imessage_workspaces,
                    status__in=Message.WAITING,
                    queued_for_line=True,
                )
                .values("workspace_id")
                .annotate(last=Max("due_at"))
                .values_list("workspace_id", "last")
            )
        tail = self._queue_tail.get(message.workspace_id)
        until = soonest if tail is None else max(soonest, tail + timedelta(seconds=share))
        self._queue_tail[message.workspace_id] = until
        return _Decision("wait", until=until, queued=True)
