"""Writing enrollments and their messages: one lead at a time, or a whole list in bulk.

A bulk enrollment streams the list in pages from one query (memory stays flat
whatever the list size). Python decides each lead (line, stop reason, first send
time), then writes the page before it reads the next one: on Postgres by one
statement that writes the page's enrollments and expands its leads into their
step messages on the server (_PageInsert, for the figures it buys), elsewhere by
the ORM's bulk inserts, which write the same rows. Every message is written in its
final shape for the sequence (see campaigns.sequencing): `scheduled` and held, its
campaign, step index, batch id, stop-on-reply flag and the lead's line pinned.

The Python work is a small part of a start (about 1.6 of 23 s, profiled on 100,000
leads; the server's inserts and the foreign key checks at commit take most of the
rest), so overlapping it with the server's work would buy little.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing
from datetime import datetime, timedelta
from itertools import islice

from django.db import connection
from django.db.models import Exists, OuterRef, Q

from campaigns.models import Campaign, Enrollment, Step
from campaigns.sequencing import DO_NOT_CONTACT, OPTED_OUT
from leads.models import IDENTIFIER_FIELDS, Lead, ListMembership
from messaging.models import Conversation, DoNotContact, Message
from tuco.ids import new_id

PAGE_SIZE = 5000
# First send times of a bulk enrollment spread over this many microseconds (see pacing).
SPREAD = 10**6
# Leads per conversation lookup (keeps the query under SQLite's parameter limit).
TALK_CHUNK = 1000


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


def addressed_by(step: Step) -> tuple[bool, bool]:
    """Whether a step's message carries the lead's (phone, email): an email step
    only the email, an SMS step only the phone, iMessage both."""
    return step.message_type != "email", step.message_type != "sms"


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
            held=True,
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
            by_phone, by_email = addressed_by(step)
            phone = lead.phone if by_phone else ""
            email = lead.email if by_email else ""
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
                # Not read while the row is held: set when it is released.
                due_at=now,
                created_at=now,
                updated_at=now,
            )
            if cancel_reason:
                row.update(status="cancelled", cancel_reason=cancel_reason)
            yield row


def insert_messages(rows: Iterable[dict]) -> None:
    Message.objects.bulk_create([Message(**row) for row in rows], batch_size=500)


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


def enrollment_state(reason: str, now: datetime) -> tuple[str, datetime | None]:
    """An enrollment's (state, finished_at) when it is written: a lead with a stop
    reason is enrolled stopped, with every step cancelled."""
    return ("stopped", now) if reason else ("active", None)


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
    dnc = dnc_values(campaign.workspace_id)
    batch_id = new_id()
    first_due = first_send_time(campaign, steps, start)
    writer = (
        _PageInsert(builder, batch_id=batch_id, first_due=first_due, now=now)
        if connection.vendor == "postgresql"
        else _ORMWriter(builder, batch_id=batch_id, first_due=first_due, now=now)
    )
    # One query streamed in pages through a server-side cursor (memory stays flat),
    # leaving out the leads already enrolled. It is planned and run once, before the
    # first page is written: a query per page would be planned against enrollment
    # statistics the pages themselves make stale, and would rescan the rows this
    # start has already written.
    enrolled = Enrollment.objects.filter(campaign_id=campaign.pk, lead_id=OuterRef("lead_id"))
    members = (
        ListMembership.objects.filter(lead_list_id=campaign.lead_list_id)
        .exclude(Exists(enrolled))
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
    listed = members.iterator(chunk_size=PAGE_SIZE)
    # Closed before the transaction ends, even on an error (the cursor belongs to it).
    with closing(listed):
        for rows in _pages(listed, PAGE_SIZE):
            page = [_LeadRow(row) for row in rows]
            talks = talking_lines(campaign.workspace_id, page, line_ids) if any_talks else {}
            decided = []
            for lead in page:
                # Spread first sends in list order, or shuffled, a microsecond apart:
                # the gate releases them in this order.
                if campaign.randomize_order:
                    offset = random.randrange(SPREAD)  # noqa: S311
                else:
                    offset = min(total, SPREAD - 1)
                line_id = talks.get(lead.pk) or next(line_cycle)
                reason = _stop_reason_for(lead, dnc)
                decided.append((lead, line_id, offset, reason))
                total += 1
            writer.write(decided)
    return total


def _pages(rows: Iterator, size: int) -> Iterator[list]:
    while page := list(islice(rows, size)):
        yield page


class _ORMWriter:
    """The portable writer: model rows through the ORM's bulk inserts."""

    def __init__(self, builder: MessageRows, *, batch_id: str, first_due: datetime, now: datetime):
        self.builder = builder
        self.batch_id = batch_id
        self.first_due = first_due
        self.now = now

    def write(self, decided: list[tuple]) -> None:
        """Write the page's enrollments and step messages: (lead, line id, first send
        offset in microseconds, stop reason) per lead."""
        builder, batch_id, now = self.builder, self.batch_id, self.now
        campaign = builder.campaign
        enrollments, messages = [], []
        for lead, line_id, offset, reason in decided:
            state, finished_at = enrollment_state(reason, now)
            enrollments.append(
                Enrollment(
                    workspace_id=campaign.workspace_id,
                    campaign_id=campaign.pk,
                    lead_id=lead.pk,
                    line_id=line_id,
                    state=state,
                    batch_id=batch_id,
                    enrolled_at=now,
                    finished_at=finished_at,
                )
            )
            messages.extend(
                builder.for_lead(
                    lead=lead,
                    line_id=line_id,
                    batch_id=batch_id,
                    first_due=self.first_due + timedelta(microseconds=offset),
                    now=now,
                    cancel_reason=reason,
                )
            )
        Enrollment.objects.bulk_create(enrollments, batch_size=500)
        insert_messages(messages)


# Message columns that differ from lead to lead (besides id, temp_guid and status,
# built in _PageInsert); every other column is the same for all leads of a step and
# comes from MessageRows (the model's defaults included).
_PER_LEAD = {
    "lead_id": "p.lead_id",
    "line_id": "p.line_id",
    "line_pinned": "p.line_id IS NOT NULL",
    "recipient_phone": "s.recipient_phone",
    "recipient_email": "s.recipient_email",
    "recipient_name": "p.name",
    "scheduled_date": "s.scheduled_date",
    "cancel_reason": "CASE WHEN p.reason = '' THEN s.cancel_reason ELSE p.reason END",
}
# A page's leads as they reach the server: one JSON array per lead, these values
# in this order (arrays rather than objects: a fifth of the encoding time).
# `send_offset` is the lead's first send time, in microseconds after the start's first one.
_PAGE_COLUMNS = (
    ("lead_id", "varchar"),
    ("line_id", "varchar"),
    ("phone", "varchar"),
    ("email", "varchar"),
    ("name", "varchar"),
    ("send_offset", "bigint"),
    ("reason", "varchar"),
    ("state", "varchar"),
    ("finished_at", "timestamptz"),
)
_COUNTER = 1 << 24


class _PageInsert:
    """The Postgres writer: one statement per page. The page's leads go to the server
    as one JSON document (cheap to encode, and parsed once), and the server writes
    their enrollments and one message per lead and step, so neither side builds or
    parses a 40-column row per message.

    Why Postgres has a writer of its own: starting a 3-step campaign on 100,000 leads
    (`python -m bench campaigns`, 300,000 messages) must take under 15 s. Measured
    one after the other on one machine (2 cores, load average 3.5 to 6): this writer
    16.1 s, _ORMWriter 133 s, _ORMWriter sending the messages by COPY 52.2 s. So 3x
    and more over the portable writers, which miss the goal by far.

    Ids keep the tuco.ids layout (seconds, 5 random bytes, a 3-byte counter) as
    their own generator would: fresh random bytes per page and table, the counter
    running in insert order, so the ids are unique and new rows land at the right
    end of the primary keys. A page (PAGE_SIZE leads, MAX_STEPS steps) stays far
    below the counter's range.
    """

    def __init__(self, builder: MessageRows, *, batch_id: str, first_due: datetime, now: datetime):
        steps = builder.steps
        campaign = builder.campaign
        sample = _LeadRow(("", "", "", "", "", False))
        templates = builder.for_lead(
            lead=sample, line_id=None, batch_id=batch_id, first_due=None, now=now
        )
        fields = {f.attname: f for f in Message._meta.concrete_fields}
        computed = {"id", "temp_guid", "status", *_PER_LEAD}
        per_step = ["status", "cancel_reason", *(a for a in builder.attnames if a not in computed)]
        rows, step_params = [], []
        for step, template in zip(steps, templates, strict=True):
            by_phone, by_email = addressed_by(step)
            cells = [
                str(step.position),
                "p.phone" if by_phone else "''",
                "p.email" if by_email else "''",
                "p.due" if step.position == 0 else "NULL::timestamptz",
            ]
            for attname in per_step:
                field = fields[attname]
                cells.append(f"CAST(%(step{len(step_params)})s AS {field.db_type(connection)})")
                step_params.append(field.get_db_prep_save(template[attname], connection))
            rows.append(f"({', '.join(cells)})")
        step_columns = ["n", "recipient_phone", "recipient_email", "scheduled_date", *per_step]
        select = []
        for attname in builder.attnames:
            if attname == "id":
                select.append(_id_sql("message", f"p.i * {len(steps)} + s.n"))
            elif attname == "temp_guid":
                select.append(
                    f"(%(guid_prefix)s || lpad(to_hex(p.i * {len(steps)} + s.n), 6, '0'))::uuid"
                )
            elif attname == "status":
                select.append("CASE WHEN p.reason = '' THEN s.status ELSE %(cancelled)s END")
            else:
                select.append(_PER_LEAD.get(attname, f"s.{attname}"))
        enrollment_columns = [
            Enrollment._meta.get_field(name).column
            for name in (
                "id", "workspace", "campaign", "lead", "line", "state", "batch_id",
                "enrolled_at", "finished_at",
            )
        ]  # fmt: skip
        offset = [name for name, _ in _PAGE_COLUMNS].index("send_offset")
        page_columns = ", ".join(
            f"(r.lead->>{k})::{kind} AS {name}" for k, (name, kind) in enumerate(_PAGE_COLUMNS)
        )
        self.sql = (
            f"WITH p AS MATERIALIZED (SELECT r.i - 1 AS i, {page_columns},"
            f" %(first_due)s + (r.lead->>{offset})::bigint * interval '1 microsecond' AS due"
            " FROM jsonb_array_elements(%(page)s::jsonb) WITH ORDINALITY AS r(lead, i)),"
            f" e AS (INSERT INTO {Enrollment._meta.db_table} ({', '.join(enrollment_columns)})"
            f" SELECT {_id_sql('enrollment', 'p.i')}, %(workspace)s, %(campaign)s,"
            " p.lead_id, p.line_id, p.state, %(batch)s, %(now)s, p.finished_at FROM p)"
            f" INSERT INTO {Message._meta.db_table} ({', '.join(builder.columns)})"
            f" SELECT {', '.join(select)} FROM p"
            # LATERAL (the rows name p's columns) keeps each lead's steps together,
            # in order, so the counter follows the insert order.
            f" CROSS JOIN LATERAL (VALUES {', '.join(rows)}) AS s({', '.join(step_columns)})"
        )
        self.params = {
            "workspace": campaign.workspace_id,
            "campaign": campaign.pk,
            "batch": batch_id,
            "now": now,
            "first_due": first_due,
            "cancelled": Message.Status.CANCELLED.value,
            **{f"step{k}": value for k, value in enumerate(step_params)},
        }
        self.now = now

    def write(self, decided: list[tuple]) -> None:
        """Write the page's enrollments and step messages: (lead, line id, first send
        offset in microseconds, stop reason) per lead."""
        page = []
        for lead, line_id, offset, reason in decided:
            state, finished_at = enrollment_state(reason, self.now)
            page.append(
                [
                    lead.pk,
                    line_id,
                    lead.phone,
                    lead.email,
                    lead.full_name,
                    offset,
                    reason,
                    state,
                    finished_at and finished_at.isoformat(),
                ]
            )
        params = dict(self.params, page=json.dumps(page), guid_prefix=_guid_prefix())
        for run in ("message", "enrollment"):
            params[f"{run}_prefix"] = (int(time.time()).to_bytes(4, "big") + os.urandom(5)).hex()
            params[f"{run}_counter"] = int.from_bytes(os.urandom(3), "big")
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)


def _guid_prefix() -> str:
    """The first 26 hex digits of a page's tempGuids: random version-4 UUIDs but for
    the last 24 bits, which count the page's messages. Unique within the page by the
    counter and across pages by 96 random bits, without a strong random draw per row
    (the server's costs more than the rest of the row)."""
    r = os.urandom(13).hex()
    variant = "89ab"[int(r[24], 16) % 4]
    return f"{r[:12]}4{r[12:15]}{variant}{r[15:24]}"


def _id_sql(run: str, index: str) -> str:
    """SQL for id number `index` (0, 1, ...) of a run of ids: the run's prefix
    (seconds and random bytes) and its counter, from where it starts."""
    return f"%({run}_prefix)s || lpad(to_hex(mod(%({run}_counter)s + {index}, {_COUNTER})), 6, '0')"


def _cycle(values: list):
    if not values:
        while True:
            yield None
    while True:
        yield from values
