"""Writing enrollments and their messages: one lead at a time, or a whole list in bulk.

A bulk enrollment streams the list in keyset pages (memory stays flat whatever
the list size) and writes with COPY on Postgres, portable bulk inserts elsewhere.
Every message is written in its final shape for the sequence (see
campaigns.sequencing): `scheduled`, `due_at = HELD`, its campaign, step index,
batch id, stop-on-reply flag and the lead's line pinned.
"""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q

from campaigns.models import Campaign, Enrollment, Step
from campaigns.sequencing import DO_NOT_CONTACT, HELD, OPTED_OUT
from leads.models import IDENTIFIER_FIELDS, Lead, ListMembership
from messaging.models import Conversation, DoNotContact, Message
from tuco.ids import new_id

PAGE_SIZE = 5000
# Message rows sent to the server at a time within a page's COPY.
CHUNK_ROWS = 1500
# First send times of a bulk enrollment spread over this many microseconds (see pacing).
SPREAD = 10**6
# Leads per conversation lookup (keeps the query under SQLite's parameter limit).
TALK_CHUNK = 1000
_JSON_FIELDS = {
    f.attname for f in Message._meta.concrete_fields if f.get_internal_type() == "JSONField"
}


def first_send_time(campaign: Campaign, steps: list[Step], at: datetime) -> datetime:
    """When step 1 may go out for a lead enrolled (or a campaign started) at `at`."""
    if campaign.send_immediately or not steps:
        return at
    return at + steps[0].delay_timedelta


def talking_lines(workspace_id: str, leads: list, line_ids: list[str]) -> dict[str, str]:
    """{lead id: line id} for the leads that already have a conversation on one of
    these lines ("a lead keeps the line that first talked to it"; the oldest
    conversation wins, as in the dispatcher). `leads` are Lead or _LeadRow objects."""
    if not leads or not line_ids:
        return {}
    conversations = Conversation.objects.filter(workspace_id=workspace_id, line_id__in=line_ids)
    found: dict[str, str] = {}
    for i in range(0, len(leads), TALK_CHUNK):
        chunk = leads[i : i + TALK_CHUNK]
        ids = {lead.pk for lead in chunk}
        owner = {value: lead.pk for lead in chunk for value in _addresses(lead)}
        rows = (
            conversations.filter(Q(lead_id__in=ids) | Q(address__in=owner))
            .order_by("created_at", "pk")
            .values_list("lead_id", "address", "line_id")
        )
        for lead_id, address, line_id in rows:
            lead_id = lead_id if lead_id in ids else owner.get(address)
            if lead_id is not None:
                found.setdefault(lead_id, line_id)
    return found


def _addresses(lead) -> list[str]:
    if isinstance(lead, Lead):
        return [value for _, value in lead.identifiers()]
    return lead.values


def dnc_values(workspace_id: str) -> set[str]:
    return set(
        DoNotContact.objects.filter(workspace_id=workspace_id).values_list("value", flat=True)
    )


def stop_reason(lead: Lead, dnc: set[str]) -> str:
    if lead.opted_out:
        return OPTED_OUT
    if any(value in dnc for _, value in lead.identifiers()):
        return DO_NOT_CONTACT
    return ""


class MessageRows:
    """Column values for a campaign's step messages, built from the model's own defaults."""

    def __init__(self, campaign: Campaign, steps: list[Step]):
        self.campaign = campaign
        self.steps = steps
        self.attnames = [f.attname for f in Message._meta.concrete_fields]
        self.columns = [f.column for f in Message._meta.concrete_fields]
        base = {}
        for f in Message._meta.concrete_fields:
            if f.has_default():
                base[f.attname] = f.get_default()
            elif f.null:
                base[f.attname] = None
        timezone_name = campaign.timezone or campaign.workspace.timezone
        base.update(
            workspace_id=campaign.workspace_id,
            campaign_id=campaign.pk,
            stop_on_reply=campaign.stop_on_reply,
            status="scheduled",
            due_at=HELD,
            timezone=timezone_name,
            send_window_start=campaign.send_window_start,
            send_window_end=campaign.send_window_end,
            allowed_days=list(campaign.allowed_days),
        )
        self.base = base

    def for_lead(
        self,
        *,
        lead: Lead,
        line_id: str | None,
        batch_id: str,
        first_due: datetime | None,
        now: datetime,
        cancel_reason: str = "",
    ) -> Iterator[dict]:
        for step in self.steps:
            row = self.base.copy()
            if step.message_type == "email":
                phone, email = "", lead.email
            elif step.message_type == "sms":
                phone, email = lead.phone, ""
            else:
                phone, email = lead.phone, lead.email
            row.update(
                id=new_id(),
                temp_guid=uuid.uuid4(),
                lead_id=lead.pk,
                line_id=line_id,
                line_pinned=line_id is not None,
                message_type=step.message_type,
                body=step.message,
                recipient_phone=phone,
                recipient_email=email,
                recipient_name=lead.full_name,
                step_index=step.position,
                batch_id=batch_id,
                sms_fallback_text=step.sms_fallback_message,
                send_fallback_sms_on_failed=bool(step.sms_fallback_message),
                scheduled_date=first_due if step.position == 0 else None,
                created_at=now,
                updated_at=now,
            )
            if cancel_reason:
                row.update(status="cancelled", cancel_reason=cancel_reason)
            yield row


def insert_messages(rows: Iterable[dict], attnames: list[str], columns: list[str]) -> None:
    if connection.vendor == "postgresql":
        table = Message._meta.db_table
        copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with connection.cursor() as wrapper, wrapper.cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(
                    [json.dumps(row[a]) if a in _JSON_FIELDS else row[a] for a in attnames]
                )
    else:
        Message.objects.bulk_create([Message(**row) for row in rows], batch_size=500)


def insert_enrollments(rows: list[dict]) -> None:
    if not rows:
        return
    if connection.vendor == "postgresql":
        table = Enrollment._meta.db_table
        names = list(rows[0])
        columns = [Enrollment._meta.get_field(n).column for n in names]
        copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with connection.cursor() as wrapper, wrapper.cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row([row[n] for n in names])
    else:
        Enrollment.objects.bulk_create([Enrollment(**row) for row in rows], batch_size=500)


_LEAD_VALUES = (
    "pk",
    "phone",
    "email",
    "first_name",
    "last_name",
    "opted_out",
    *IDENTIFIER_FIELDS[1:4],
    *IDENTIFIER_FIELDS[5:],
)


class _LeadRow:
    """The few lead fields an enrollment needs, without building model instances."""

    __slots__ = ("pk", "phone", "email", "full_name", "opted_out", "values")

    def __init__(self, row: tuple):
        self.pk, self.phone, self.email, first, last, self.opted_out = row[:6]
        self.full_name = f"{first} {last}".strip()
        self.values = [v for v in (self.phone, self.email, *row[6:]) if v]


def _stop_reason_for(lead: _LeadRow, dnc: set[str]) -> str:
    if lead.opted_out:
        return OPTED_OUT
    if dnc and any(v in dnc for v in lead.values):
        return DO_NOT_CONTACT
    return ""


def enroll_list(
    *, campaign: Campaign, steps: list[Step], lines: list, start: datetime, now: datetime
) -> int:
    """Enroll every lead of the campaign's list that is not enrolled yet; returns how many.

    Call inside a transaction holding the campaign row lock (so no single
    enrollment can race the bulk insert into the unique constraint).
    """
    if campaign.lead_list_id is None:
        return 0
    builder = MessageRows(campaign, steps)
    copier = _TextCopy(builder) if connection.vendor == "postgresql" else None
    dnc = dnc_values(campaign.workspace_id)
    batch_id = new_id()
    first_due = first_send_time(campaign, steps, start)
    # Keyset pages straight off the membership's (list, lead) unique index; leads
    # already enrolled are looked up per page by the enrollment's unique index.
    members = (
        ListMembership.objects.filter(lead_list_id=campaign.lead_list_id)
        .order_by("lead_id")
        .values_list(*(f"lead__{name}" if name != "pk" else "lead_id" for name in _LEAD_VALUES))
    )
    line_ids = [line.pk for line in lines]
    line_cycle = _cycle(line_ids)
    # Most lists are new people: skip the per-page lookup when nobody talks to these lines.
    any_talks = Conversation.objects.filter(
        workspace_id=campaign.workspace_id, line_id__in=line_ids
    ).exists()
    total = 0
    last = ""
    while True:
        rows = list(members.filter(lead_id__gt=last)[:PAGE_SIZE])
        if not rows:
            return total
        last = rows[-1][0]
        enrolled = set(
            Enrollment.objects.filter(
                campaign_id=campaign.pk, lead_id__in=[row[0] for row in rows]
            ).values_list("lead_id", flat=True)
        )
        page = [_LeadRow(row) for row in rows if row[0] not in enrolled]
        if not page:
            continue
        enrollment_rows = []
        message_rows = []
        talks = talking_lines(campaign.workspace_id, page, line_ids) if any_talks else {}
        with copier.page() if copier is not None else contextlib.nullcontext():
            total = _enroll_page(
                page, campaign, builder, copier, dnc, line_cycle, talks, batch_id, first_due,
                now, total, enrollment_rows, message_rows,
            )  # fmt: skip
        insert_enrollments(enrollment_rows)
        if copier is None:
            insert_messages(message_rows, builder.attnames, builder.columns)


def _enroll_page(
    page, campaign, builder, copier, dnc, line_cycle, talks, batch_id, first_due, now, total,
    enrollment_rows, message_rows,
) -> int:  # fmt: skip
    for lead in page:
        # Spread first sends in list order, or shuffled, a microsecond apart:
        # the gate releases them in this order.
        if campaign.randomize_order:
            offset = random.randrange(SPREAD)  # noqa: S311
        else:
            offset = min(total, SPREAD - 1)
        line_id = talks.get(lead.pk) or next(line_cycle)
        reason = _stop_reason_for(lead, dnc)
        enrollment_rows.append(
            {
                "id": new_id(),
                "workspace_id": campaign.workspace_id,
                "campaign_id": campaign.pk,
                "lead_id": lead.pk,
                "line_id": line_id,
                "state": "stopped" if reason else "active",
                "batch_id": batch_id,
                "enrolled_at": now,
                "finished_at": now if reason else None,
            }
        )
        due = first_due + timedelta(microseconds=offset)
        if copier is not None:
            copier.add(lead, line_id, batch_id, due, now, reason)
        else:
            message_rows.extend(
                builder.for_lead(
                    lead=lead,
                    line_id=line_id,
                    batch_id=batch_id,
                    first_due=due,
                    now=now,
                    cancel_reason=reason,
                )
            )
        total += 1
    return total


def _copy_text(value) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value)
    value = str(value)
    if any(c in value for c in "\\\t\n\r"):
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


class _TextCopy:
    """Step messages as COPY text lines: each step's constant columns are encoded
    once, so a row costs a list copy and a join (300,000 rows in a few seconds)."""

    def __init__(self, builder: MessageRows):
        self.builder = builder
        self.position = {name: i for i, name in enumerate(builder.attnames)}
        self.templates = []
        sample = _LeadRow(("x", "", "", "", "", False))
        for step, row in zip(
            builder.steps,
            builder.for_lead(lead=sample, line_id=None, batch_id="", first_due=None, now=HELD),
            strict=True,
        ):
            self.templates.append((step, [_copy_text(row[a]) for a in builder.attnames]))
        self.lines: list[str] = []
        self.copy = None
        self.sql = f"COPY {Message._meta.db_table} ({', '.join(builder.columns)}) FROM STDIN"

    def add(self, lead, line_id, batch_id, due, now, reason) -> None:
        at = self.position
        now_text = now.isoformat()
        for step, template in self.templates:
            values = template.copy()
            if step.message_type == "email":
                phone, email = "", lead.email
            elif step.message_type == "sms":
                phone, email = lead.phone, ""
            else:
                phone, email = lead.phone, lead.email
            values[at["id"]] = new_id()
            values[at["temp_guid"]] = str(uuid.uuid4())
            values[at["lead_id"]] = lead.pk
            values[at["line_id"]] = line_id or "\\N"
            values[at["line_pinned"]] = "t" if line_id else "f"
            values[at["recipient_phone"]] = _copy_text(phone)
            values[at["recipient_email"]] = _copy_text(email)
            values[at["recipient_name"]] = _copy_text(lead.full_name)
            values[at["batch_id"]] = batch_id
            values[at["scheduled_date"]] = due.isoformat() if step.position == 0 else "\\N"
            values[at["created_at"]] = now_text
            values[at["updated_at"]] = now_text
            if reason:
                values[at["status"]] = "cancelled"
                values[at["cancel_reason"]] = reason
            self.lines.append("\t".join(values))
        if len(self.lines) >= CHUNK_ROWS:
            self._send()

    @contextlib.contextmanager
    def page(self):
        """One COPY for a page of leads. Rows go to the server in chunks while the
        next ones are built, so Postgres works in parallel with Python."""
        with connection.cursor() as wrapper, wrapper.cursor.copy(self.sql) as copy:
            self.copy = copy
            try:
                yield self
                self._send()
            finally:
                self.copy = None

    def _send(self) -> None:
        if self.lines:
            self.copy.write("\n".join(self.lines) + "\n")
            self.lines = []


def _cycle(values: list):
    if not values:
        while True:
            yield None
    while True:
        yield from values
