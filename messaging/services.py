"""Writes on the outbox: enqueue, cancel, and moving a message's status forward.

Status only moves forward (Message.ENTERED_FROM). Every change a customer can subscribe
to writes its webhook outbox row in the same transaction as the status change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from leads import services as lead_services
from leads.models import Lead, LeadIdentifier
from lines import safety as line_safety
from lines.models import Line
from messaging.addresses import InvalidRecipient, recipient_normalize
from messaging.dnc import dnc_address, dnc_blocked_address, dnc_entry_add
from messaging.models import DoNotContact, FallbackConfig, Message
from messaging.schedule import get_zone
from messaging.signals import message_status_changed
from messaging.webhooks import event_emit
from tuco.api.fields import iso_utc
from tuco.errors import NotFound, ServiceError, ValidationFailed

logger = logging.getLogger(__name__)

# Status -> the webhook event a customer can subscribe to.
STATUS_EVENTS = {
    "sent": "message.sent",
    "delivered": "message.delivered",
    "read": "message.opened",
    "failed": "message.failed",
    "fallback": "message.fallback",
}
# Status -> the timestamp column it fills.
STATUS_TIMESTAMPS = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "read": "read_at",
    "failed": "failed_at",
}


def statuses_before(new_status: str) -> tuple[str, ...]:
    """Statuses a message may leave to enter `new_status`."""
    return Message.ENTERED_FROM[new_status]


def event_for_message(message: Message, status: str, data: dict | None = None) -> None:
    """Write the webhook outbox row for `message` entering `status` (inside the caller's
    transaction)."""
    event = STATUS_EVENTS.get(status)
    if event is None:
        return
    data = dict(data or {})
    if status == "read":
        data.setdefault("readAt", iso_utc(message.read_at))
    event_emit(
        workspace=message.workspace,
        event=event,
        message=message,
        lead=message.lead,
        data=data,
    )


# The error a send whose outcome the relay has not told yet carries meanwhile.
UNKNOWN_OUTCOME = "Outcome unknown, checking with the relay: "

REPORTED_STATUSES = ("sent", "fallback", "failed", "cancelled")


def status_changed_on_commit(*, message_id: str, status: str, campaign_id: str = "") -> None:
    """Announce (after commit) that a message reached sent / fallback / failed /
    cancelled, for apps that follow their messages without messaging knowing them."""
    if status not in REPORTED_STATUSES:
        return

    def send():
        message_status_changed.send(
            sender=Message, message_id=message_id, status=status, campaign_id=campaign_id or ""
        )

    transaction.on_commit(send, robust=True)


# Set while a dispatch run is queued and has not started yet: writers that find it
# set queue nothing, since that run claims their rows too (it clears the flag
# before it claims). It expires on its own, so a run that is lost costs at most
# this long; the periodic dispatcher is the backstop either way.
DISPATCH_WAKE_KEY = "messaging:dispatch-wake"
DISPATCH_WAKE_SECONDS = 2
# A queued run starts this long after the write that queued it, so that it claims
# the rows of every write in between. A run and its send tasks cost about the same
# for one row as for ten (the look-ups are per batch): without the wait, steady
# single sends (50 a second) each got a run of their own as soon as a worker was
# free, and the worker spent three times the CPU it needs on them.
DISPATCH_DELAY_SECONDS = 0.25


def dispatch_on_commit(message_ids: Iterable[str]) -> None:
    """Hand freshly due messages to the dispatcher once the transaction commits.

    Many writers in a short while queue one dispatch run between them, not one
    each: a run claims every due row, so the others would find nothing to do."""
    ids = [str(i) for i in message_ids]
    if not ids:
        return

    def queue():
        from messaging.tasks import dispatch_messages

        # An eager run (tests, CELERY_TASK_ALWAYS_EAGER) happens right here instead.
        if dispatch_messages.app.conf.task_always_eager or _wake_flag_set():
            dispatch_messages.apply_async((ids,), countdown=DISPATCH_DELAY_SECONDS)

    # The rows are committed whatever happens here: a run that cannot be queued
    # (broker down) leaves them to the periodic dispatcher, never to an error.
    transaction.on_commit(queue, robust=True)


def _wake_flag_set() -> bool:
    """Whether this writer should queue the dispatch run: the first since the last
    run started, or any writer while the cache cannot say."""
    try:
        return cache.add(DISPATCH_WAKE_KEY, 1, timeout=DISPATCH_WAKE_SECONDS)
    except Exception:
        logger.warning("Dispatch wake flag unavailable; queueing a run", exc_info=True)
        return True


def dispatch_wake_clear() -> None:
    """A dispatch run is starting: rows committed from now on need a run of their own."""
    try:
        cache.delete(DISPATCH_WAKE_KEY)
    except Exception:
        # The flag expires by itself within DISPATCH_WAKE_SECONDS.
        logger.warning("Dispatch wake flag could not be cleared", exc_info=True)


# The CRM ids a message can carry (see Message.ghl_contact_id).
CRM_ID_FIELDS = ("ghl_contact_id", "ghl_location_id", "hs_contact_id", "hs_portal_id")


def message_enqueue(
    *,
    workspace,
    body: str = "",
    message_type: str = Message.Type.IMESSAGE,
    lead=None,
    recipient_phone: str = "",
    recipient_email: str = "",
    recipient_name: str = "",
    attachment_urls: Iterable[str] = (),
    attachment_names: Iterable[str] = (),
    subject: str = "",
    line=None,
    scheduled_date: datetime | None = None,
    timezone_name: str = "",
    send_window_start: str = "",
    send_window_end: str = "",
    allowed_days: Iterable[int] = (),
    send_fallback_sms_on_failed: bool = False,
    batch_id: str = "",
    campaign_id: str = "",
    step_index: int | None = None,
    stop_on_reply: bool = False,
    sms_fallback_text: str = "",
    crm_ids: dict[str, str] | None = None,
    created_by_id: int | None = None,
    now: datetime | None = None,
) -> Message:
    """Write one outbox row (`pending`, or `scheduled` for a future `scheduled_date`).

    Inputs are expected to be validated and normalized already (see
    messaging.submit for the API's validation). Nothing is sent here: the row is
    handed to the dispatcher after the transaction commits. A `line` pins the send
    to that line. The recipient defaults to the lead's primary phone / email.
    """
    now = now or timezone.now()
    if lead is not None and not (recipient_phone or recipient_email):
        if message_type == Message.Type.EMAIL:
            recipient_email = lead.email
        else:
            recipient_phone = lead.phone
            recipient_email = lead.email
    due = scheduled_date if scheduled_date and scheduled_date > now else now
    message = Message(
        workspace=workspace,
        lead=lead,
        line=line,
        line_pinned=line is not None,
        message_type=message_type,
        body=body or "",
        subject=subject or "",
        attachment_urls=list(attachment_urls),
        attachment_names=list(attachment_names),
        recipient_phone=recipient_phone or "",
        recipient_email=recipient_email or "",
        recipient_name=recipient_name or "",
        campaign_id=campaign_id or "",
        step_index=step_index,
        batch_id=batch_id or "",
        stop_on_reply=stop_on_reply,
        sms_fallback_text=sms_fallback_text or "",
        status=Message.Status.SCHEDULED if due > now else Message.Status.PENDING,
        scheduled_date=scheduled_date,
        due_at=due,
        timezone=timezone_name or "",
        send_window_start=send_window_start or "",
        send_window_end=send_window_end or "",
        allowed_days=sorted(set(allowed_days)),
        send_fallback_sms_on_failed=send_fallback_sms_on_failed,
        **{name: value or "" for name, value in (crm_ids or {}).items() if name in CRM_ID_FIELDS},
        created_by_id=created_by_id,
        created_at=now,
        updated_at=now,
    )
    # No savepoint: a failed insert fails the caller's transaction anyway.
    with transaction.atomic(savepoint=False):
        message.save(force_insert=True)
        if message.status == Message.Status.PENDING:
            dispatch_on_commit([message.pk])
    return message


def message_cancel_waiting(
    *,
    workspace,
    lead=None,
    addresses: Iterable[str] = (),
    reason: str,
    stop_on_reply_only: bool = False,
    now: datetime | None = None,
) -> list[str]:
    """Cancel the lead's (or these addresses') messages that have not started sending
    (only its stop-on-reply ones with `stop_on_reply_only`). Returns the ids cancelled.

    Rows the dispatcher has locked are waited for, not skipped: it may only be
    rescheduling them, and a skipped row would go out later. Rows it moved to
    `sending` are left alone: the send task re-checks opt-out, do-not-contact and
    replies itself right before sending.
    """
    addresses = [a for a in addresses if a]
    match = Q()
    if lead is not None:
        match |= Q(lead=lead)
    if addresses:
        match |= Q(recipient_phone__in=addresses) | Q(recipient_email__in=addresses)
    if not match:
        return []
    rows = Message.objects.filter(match, workspace=workspace, status__in=Message.WAITING)
    now = now or timezone.now()
    with transaction.atomic():
        # All the matching rows are locked, in primary key order, even when only the
        # stop-on-reply ones change: a reply that is also STOP cancels twice in one
        # transaction, and two cancels of one lead must take their locks in one order.
        locked = list(
            rows.select_for_update(no_key=True)
            .order_by("pk")
            .values_list("pk", "campaign_id", "stop_on_reply")
        )
        chosen = [(pk, c) for pk, c, stop in locked if stop or not stop_on_reply_only]
        ids = [pk for pk, _ in chosen]
        if ids:
            Message.objects.filter(pk__in=ids, status__in=Message.WAITING).update(
                status=Message.Status.CANCELLED,
                cancel_reason=reason[:200],
                updated_at=now,
            )
            for pk, campaign_id in chosen:
                status_changed_on_commit(
                    message_id=pk, status=Message.Status.CANCELLED, campaign_id=campaign_id
                )
    return ids


def message_cancel(*, message: Message, reason: str, now: datetime | None = None) -> bool:
    """Cancel one message that has not been claimed for sending yet. A `sending` row
    may already be on its way to the relay, so it is left to finish (the send task
    itself re-checks opt-out and do-not-contact right before sending)."""
    now = now or timezone.now()
    updated = Message.objects.filter(pk=message.pk, status__in=Message.WAITING).update(
        status=Message.Status.CANCELLED, cancel_reason=reason[:200], updated_at=now
    )
    if updated:
        message.status = Message.Status.CANCELLED
        message.cancel_reason = reason[:200]
        status_changed_on_commit(
            message_id=message.pk, status=message.status, campaign_id=message.campaign_id
        )
    return bool(updated)


def message_advance(
    *,
    new_status: str,
    message_id: str | None = None,
    external_id: str | None = None,
    workspace=None,
    at: datetime | None = None,
    error: str | None = None,
    data: dict | None = None,
) -> bool:
    """Move a message forward to `new_status` (delivered, read, failed, sent...).

    Identified by our id or by the channel's id (relay guid / Twilio SID). A
    conditional UPDATE only moves a row whose current status may enter `new_status`
    (Message.ENTERED_FROM), so a late or repeated callback never moves it back and a
    failure report after delivery changes nothing. Emits the matching webhook event in
    the same transaction. Returns True when the row moved.

    A message that reaches `failed` this way (e.g. the relay reports a send error
    after accepting it) gets its fallback SMS when it asked for one.
    """
    if new_status not in Message.ENTERED_FROM:
        raise ValueError(f"{new_status!r} is not an outcome a message can advance to")
    if not (message_id or external_id):
        raise ValueError("message_advance needs message_id or external_id")
    at = at or timezone.now()
    rows = Message.objects.all()
    if workspace is not None:
        rows = rows.filter(workspace=workspace)
    if message_id:
        rows = rows.filter(pk=message_id)
    else:
        rows = rows.filter(external_message_id=external_id)
    changes = {"status": new_status, "updated_at": timezone.now()}
    column = STATUS_TIMESTAMPS.get(new_status)
    if column:
        changes[column] = at
    if error is not None:
        changes["error_message"] = error[:2000]
    with transaction.atomic():
        message = rows.select_related("workspace", "lead").first()
        if message is None:
            return False
        moved = Message.objects.filter(
            pk=message.pk, status__in=statuses_before(new_status)
        ).update(**changes)
        if not moved:
            return False
        if new_status in ("delivered", "read"):
            # A receipt can overtake the send's own answer: keep sent_at meaningful.
            if message.sent_at is None:
                Message.objects.filter(pk=message.pk, sent_at__isnull=True).update(sent_at=at)
            # The outcome is known now; a failure reported before stays (with its event).
            if message.error_message.startswith(UNKNOWN_OUTCOME):
                Message.objects.filter(pk=message.pk).update(error_message="")
                message.error_message = ""
        for name, value in changes.items():
            setattr(message, name, value)
        payload = dict(data or {})
        if new_status == "failed":
            payload.setdefault("error", error or message.error_message)
        event_for_message(message, new_status, payload)
        status_changed_on_commit(
            message_id=message.pk, status=new_status, campaign_id=message.campaign_id
        )
        if new_status == "failed":
            fallback_sms_on_commit(message, reason="failed")
        _line_evidence(message, new_status, at)
    return True


def _line_evidence(message: Message, new_status: str, at: datetime) -> None:
    """Tell line safety what the relay reported about one of the line's iMessages."""
    if not message.line_id or message.message_type != Message.Type.IMESSAGE:
        return
    kind = {"delivered": "delivered", "failed": "failed"}.get(new_status)
    if new_status == "read" and message.delivered_at is None:
        kind = "delivered"  # a read receipt that came without its delivery receipt
    if kind:
        line_safety.line_evidence_record(line_id=message.line_id, kind=kind, at=at)


# Fallback SMS


def fallback_sms_wanted(message: Message, config: FallbackConfig | None, reason: str) -> bool:
    if config is None or not config.is_configured:
        return False
    if message.message_type != Message.Type.IMESSAGE:
        return False
    if not (message.recipient_phone or (message.lead and message.lead.phone)):
        return False
    if reason == "fallback":
        return True
    return message.send_fallback_sms_on_failed or config.send_fallback_sms_on_failed


def fallback_sms_on_commit(message: Message, *, reason: str) -> None:
    """Queue the fallback SMS for `message` after the transaction commits, if wanted."""
    config = FallbackConfig.objects.filter(workspace_id=message.workspace_id).first()
    if not fallback_sms_wanted(message, config, reason):
        return
    message_id = message.pk

    def queue():
        from messaging.tasks import send_fallback_sms

        send_fallback_sms.delay(message_id)

    transaction.on_commit(queue, robust=True)


# Do-not-contact


@dataclass(frozen=True)
class DncAdded:
    entry: DoNotContact
    created: bool
    cancelled_message_ids: list[str]


def dnc_add(
    *,
    workspace,
    phone: str | None = None,
    email: str | None = None,
    reason: str = "",
    source: str = DoNotContact.Source.API,
) -> DncAdded:
    """Put an address on the list (idempotent: an existing entry is returned as is) and
    cancel every message still waiting for it or for the lead that owns it."""
    kind, value = dnc_address(phone=phone, email=email)
    return dnc_add_value(workspace=workspace, kind=kind, value=value, reason=reason, source=source)


def dnc_add_value(*, workspace, kind: str, value: str, reason: str, source: str) -> DncAdded:
    """`dnc_add` for an address already normalized."""
    with transaction.atomic():
        entry, created = dnc_entry_add(
            workspace=workspace, kind=kind, value=value, reason=reason, source=source
        )
        owner = LeadIdentifier.objects.filter(workspace=workspace, value=value).first()
        cancelled = message_cancel_waiting(
            workspace=workspace,
            lead=owner.lead if owner else None,
            addresses=[value],
            reason="Recipient is on the do-not-contact list",
        )
    return DncAdded(entry=entry, created=created, cancelled_message_ids=cancelled)


# The API's send request


# The published bodies in full (openapi.json's examples; send-message.mdx shortens
# some of them with "..."): clients compare them literally.
NO_ACTIVE_LINES = "No active lines in workspace. Add and activate a line, or provide fromLineId."
NO_RECIPIENT = (
    "Either recipientEmail or recipientPhone is required "
    "(in body or on the lead when leadId is provided)."
)
FALLBACK_NOT_CONFIGURED = (
    "sendFallbackSmsOnFailed is true but fallback SMS is not configured. Configure "
    "fallback in workspace settings (Settings → Fallback) or set "
    "sendFallbackSmsOnFailed to false."
)
EMPTY_MESSAGE = "Message and attachmentUrls cannot both be empty"
BAD_TYPE = "Invalid messageType. Must be email, sms, or imessage"
LEAD_NOT_FOUND = "Lead not found or access denied"


@dataclass(frozen=True)
class Submitted:
    message: Message
    lead_id: str
    # The recipient matched a lead of the workspace (no leadId was given).
    lead_matched: bool


def _normalize_recipient(value, kind: str, field: str | None = None) -> str:
    try:
        return recipient_normalize(value, kind)
    except InvalidRecipient as exc:
        field = field or ("recipientPhone" if kind == "phone" else "recipientEmail")
        raise ValidationFailed(str(exc), field=field) from None


def message_submit(
    *,
    workspace,
    message_type: str = Message.Type.IMESSAGE,
    body: str = "",
    attachment_urls: list[str] = (),
    attachment_names: list[str] = (),
    recipient_phone: str = "",
    recipient_email: str = "",
    recipient_name: str = "",
    alt_phones: Iterable[str] = (),
    alt_emails: Iterable[str] = (),
    lead_id: str = "",
    line_id: str = "",
    scheduled_date: datetime | None = None,
    timezone_name: str = "",
    send_window_start: str = "",
    send_window_end: str = "",
    allowed_days: Iterable[int] = (),
    send_fallback_sms_on_failed: bool = False,
    batch_id: str = "",
    subject: str = "",
    crm_ids: dict[str, str] | None = None,
    created_by_id: int | None = None,
    now: datetime | None = None,
) -> Submitted:
    """Send one message as `POST /api/messages` does: resolve or create the lead,
    write one row. Returns the message, its lead and how the lead was found.

    A lead given by id must exist (404) before anything else is checked. Without
    one, the recipient's lead is found by any of its addresses (`lead_matched`: the
    published API answers 200 then) or created in "Quick Sends". The message's
    `recipient_name` defaults to the lead's name. `crm_ids` (ghl_contact_id,
    ghl_location_id, hs_contact_id, hs_portal_id) are kept on the message, and
    `created_by_id` (the user who sends it) too.

    Takes input already validated and normalized (phones in E.164, emails
    lowercased, a blank message only with attachments: see the API's SendInput).
    A naive `scheduled_date` is read in `timezone_name`, else the workspace's
    time zone. Every check happens before anything is written; the lead and the
    message are written in one transaction.
    """

    if "\n" in subject or "\r" in subject:
        # It becomes an email header, which cannot hold a line break.
        raise ValidationFailed("must not contain line breaks", field="subject")

    lead = None
    if lead_id:
        lead = Lead.objects.filter(workspace=workspace, pk=lead_id).first()
        if lead is None:
            raise ServiceError(LEAD_NOT_FOUND, status=404)

    line = None
    if message_type == Message.Type.IMESSAGE:
        if line_id:
            line = Line.objects.filter(workspace=workspace, pk=line_id).first()
            if line is None:
                raise NotFound("Line not found")
        elif not Line.objects.filter(workspace=workspace, is_active=True).exists():
            raise ServiceError(NO_ACTIVE_LINES)

    phone, email = recipient_phone, recipient_email
    alt = {f"altPhone{n}": value for n, value in enumerate(alt_phones, start=1) if value} | {
        f"altEmail{n}": value for n, value in enumerate(alt_emails, start=1) if value
    }
    lead_phone = lead.phone if lead else ""
    lead_email = lead.email if lead else ""
    if not (phone or email or lead_phone or lead_email):
        raise ServiceError(NO_RECIPIENT)
    if message_type == Message.Type.SMS and not (phone or lead_phone):
        raise ValidationFailed("an SMS needs a phone number", field="recipientPhone")
    if message_type == Message.Type.EMAIL and not (email or lead_email):
        raise ValidationFailed("an email needs an email address", field="recipientEmail")

    config = None
    if send_fallback_sms_on_failed or message_type == Message.Type.SMS:
        config = FallbackConfig.objects.filter(workspace=workspace).first()
    if send_fallback_sms_on_failed and not (config and config.is_configured):
        raise ServiceError(FALLBACK_NOT_CONFIGURED, code="FALLBACK_NOT_CONFIGURED")
    if message_type == Message.Type.SMS and not (config and config.is_configured):
        raise ServiceError(
            "SMS needs Twilio: configure it with PATCH /api/workspace/fallback-config",
            code="FALLBACK_NOT_CONFIGURED",
        )

    blocked = dnc_blocked_address(
        workspace=workspace,
        addresses=[phone or lead_phone, email or lead_email]
        if message_type != Message.Type.EMAIL
        else [email or lead_email],
    )
    if blocked:
        raise ServiceError(
            f"{blocked} is on the do-not-contact list", code="DO_NOT_CONTACT", status=400
        )

    if scheduled_date is not None and scheduled_date.tzinfo is None:
        zone = get_zone(timezone_name or workspace.timezone or "UTC")
        scheduled_date = scheduled_date.replace(tzinfo=zone)
    if scheduled_date is not None:
        scheduled_date = scheduled_date.astimezone(UTC)
    current = now or timezone.now()
    # An iMessage going out now checks its recipient's availability as it sends
    # (and writes the answer to the lead): a new lead needs no check of its own.
    sends_now = message_type == Message.Type.IMESSAGE and not (
        scheduled_date and scheduled_date > current
    )
    lead_matched = False
    # Whether `lead` was read after every change this request made to it.
    fresh = False
    with transaction.atomic():
        if lead is None:
            lead = lead_services.lead_find_by_identifiers(
                workspace=workspace,
                phones=[phone] + [v for k, v in alt.items() if k.startswith("altPhone")],
                emails=[email] + [v for k, v in alt.items() if k.startswith("altEmail")],
            )
            if lead is not None:
                lead_matched = True
                merge = {"phone": phone, "email": email, **alt}
                lead_services.lead_merge_identifiers(workspace=workspace, lead=lead, fields=merge)
            else:
                first, _, last = recipient_name.partition(" ")
                fields = {"phone": phone, "email": email, **alt}
                if first:
                    fields.update(firstName=first, lastName=last.strip())
                lead, _created = lead_services.lead_get_or_create(
                    workspace=workspace,
                    data={k: v for k, v in fields.items() if v},
                    lead_list=lead_services.lead_list_quick_sends(workspace=workspace),
                    source="api",
                    check_availability=not sends_now,
                )
                fresh = True
        elif alt:
            lead_services.lead_merge_identifiers(workspace=workspace, lead=lead, fields=alt)
        if not fresh and (not (phone or email) or not recipient_name):
            lead.refresh_from_db()
        recipient_name = recipient_name or lead.full_name
        if not (phone or email):
            if message_type == Message.Type.EMAIL:
                email = lead.email
            else:
                phone, email = lead.phone, lead.email
        message = message_enqueue(
            workspace=workspace,
            body=body,
            message_type=message_type,
            lead=lead,
            recipient_phone=phone if message_type != Message.Type.EMAIL else "",
            recipient_email=email if message_type != Message.Type.SMS else "",
            recipient_name=recipient_name,
            subject=subject,
            line=line,
            send_fallback_sms_on_failed=send_fallback_sms_on_failed,
            batch_id=batch_id,
            now=current,
            attachment_urls=attachment_urls,
            attachment_names=attachment_names,
            scheduled_date=scheduled_date,
            timezone_name=timezone_name,
            send_window_start=send_window_start,
            send_window_end=send_window_end,
            allowed_days=allowed_days,
            crm_ids=crm_ids,
            created_by_id=created_by_id,
        )
    return Submitted(message=message, lead_id=lead.pk, lead_matched=lead_matched)


def message_cancel_for_lead(
    *, workspace, lead_id: str | None = None, phone: str = "", email: str = ""
) -> tuple[list[str], str | None]:
    """`POST /api/messages/cancel-for-lead`: cancel waiting messages of a lead (by id,
    or the lead owning the phone / email, or to those addresses). Returns (ids, lead id)."""

    lead = None
    if lead_id:
        lead = Lead.objects.filter(workspace=workspace, pk=str(lead_id)).first()
        if lead is None:
            raise ServiceError(LEAD_NOT_FOUND, status=404)
    phone = _normalize_recipient(phone, "phone")
    email = _normalize_recipient(email, "email")
    if lead is None:
        lead = lead_services.lead_find_by_identifiers(
            workspace=workspace, phones=[phone] if phone else [], emails=[email] if email else []
        )
    ids = message_cancel_waiting(
        workspace=workspace,
        lead=lead,
        addresses=[a for a in (phone, email) if a],
        reason="Cancelled through the API",
    )
    return ids, lead.pk if lead else None


def fallback_config_update(
    *,
    workspace,
    enabled: bool | None = None,
    twilio_account_sid: str | None = None,
    twilio_auth_token: str | None = None,
    twilio_from_number: str | None = None,
    send_fallback_sms_on_failed: bool | None = None,
):
    """Change the given Twilio settings (None leaves one as it is); the auth token is
    write-only. The from number is normalized; enabling needs all three credentials."""

    changes = {
        "enabled": enabled,
        "twilio_account_sid": twilio_account_sid,
        "twilio_auth_token": twilio_auth_token,
        "send_fallback_sms_on_failed": send_fallback_sms_on_failed,
    }
    if twilio_from_number is not None:
        changes["twilio_from_number"] = _normalize_recipient(
            twilio_from_number, "phone", field="twilioFromNumber"
        )
    with transaction.atomic():
        locked = FallbackConfig.objects.select_for_update(no_key=True)
        config, _ = locked.get_or_create(workspace=workspace)
        for name, value in changes.items():
            if value is not None:
                setattr(config, name, value)
        if config.enabled and not config.is_configured:
            raise ValidationFailed(
                "Enabling the fallback needs twilioAccountSid, twilioAuthToken and twilioFromNumber"
            )
        config.save()
    return config


def fallback_sms_submit(*, workspace, to: str, body: str) -> Message:
    """`POST /api/fallback-sms`: queue one SMS (`body` not blank) to the phone `to`
    through the workspace's Twilio number."""

    config = FallbackConfig.objects.filter(workspace=workspace).first()
    if config is None or not config.is_configured:
        raise ServiceError(
            "No Twilio fallback is configured for this workspace "
            "(PATCH /api/workspace/fallback-config)",
            code="FALLBACK_NOT_CONFIGURED",
        )
    phone = _normalize_recipient(to, "phone", field="to")
    if dnc_blocked_address(workspace=workspace, addresses=[phone]):
        raise ServiceError(f"{phone} is on the do-not-contact list", code="DO_NOT_CONTACT")
    return message_enqueue(
        workspace=workspace, body=body, message_type=Message.Type.SMS, recipient_phone=phone
    )
