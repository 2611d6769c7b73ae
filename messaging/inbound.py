"""Inbound traffic: relay and Twilio callbacks, replies and opt-out.

Every callback handler here is idempotent: relays send `new-message` twice for one
of our sends, a lost webhook is later found again by the poll, and Twilio retries.
Inbound messages are stored once per (workspace, channel, external id); status
changes go through `message_advance`, which only ever moves a message forward.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, Window
from django.db.models.functions import Greatest, RowNumber
from django.utils import timezone

from leads.models import Lead, LeadIdentifier
from leads.normalize import InvalidIdentifier, normalize_email
from leads.tags import lead_tags_add
from lines import safety as line_safety
from lines.models import Line
from lines.relay import WEBHOOK_EVENTS as RELAY_WEBHOOK_EVENTS
from lines.relay import RelayError, get_client
from messaging.addresses import direct_chat_guid, is_email, normalize_address, phone_normalize
from messaging.documents import integration_ids, lead_document, message_document
from messaging.models import Conversation, DoNotContact, InboundMessage, Message
from messaging.models.outbox import REPLIED_REASON
from messaging.services import dnc_add_value, message_advance, message_cancel_waiting
from messaging.webhooks import campaign_exists, event_emit
from tuco.api.fields import iso_utc
from tuco.errors import ServiceError, ValidationFailed
from tuco.ids import looks_like_id

logger = logging.getLogger(__name__)

OPT_OUT_KEYWORDS = frozenset(
    {
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "OPT OUT",
        "REMOVE ME",
        "DO NOT CONTACT",
    }
)
REPLY_PREVIEW_CHARS = 200
RECENT_LIMIT = 10
OPT_OUT_REASON = "Opted out by reply"
# The tag a lead gets when a reply opts it out (source "rule"), so campaigns can
# branch or stop on it like on any tag.
OPT_OUT_TAG = "opted-out"


def is_opt_out(text: str) -> bool:
    """True when the whole message (trimmed, any case, any inner spacing) is a keyword."""
    return " ".join((text or "").split()).upper() in OPT_OUT_KEYWORDS


def _from_ms(value) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


# --------------------------------------------------------------------------- leads


def _lead_for_address(*, workspace, address: str) -> Lead:
    """The lead owning `address`, or a new lead in the "Quick Sends" list."""
    from leads.services import lead_get_or_create, lead_list_quick_sends

    owner = (
        LeadIdentifier.objects.filter(workspace=workspace, value=address)
        .select_related("lead")
        .first()
    )
    if owner is not None:
        return owner.lead
    data = {"email": address} if is_email(address) else {"phone": address}
    try:
        lead, _ = lead_get_or_create(
            workspace=workspace,
            data=data,
            lead_list=lead_list_quick_sends(workspace=workspace),
            source="reply",
        )
    except ServiceError:
        lead = None
    if lead is None:
        # An address the lead rules refuse (e.g. a short code): keep the reply, no lead.
        return None
    return lead


# --------------------------------------------------------------------------- inbound


def inbound_record(
    *,
    workspace,
    address: str,
    text: str,
    channel: str,
    external_id: str = "",
    line: Line | None = None,
    chat_guid: str = "",
    received_at: datetime | None = None,
) -> InboundMessage | None:
    """Store one inbound message and apply what a reply means; None for a duplicate.

    In one transaction: the message, its lead (found or created in "Quick Sends"),
    the conversation (unread count, last message, the line that talked), the lead's
    `replied_at`, cancelling the lead's waiting stop-on-reply messages, opt-out for
    a STOP-like message, and the `message.reply` webhook outbox rows.
    """
    address = normalize_address(address)
    if not address:
        return None
    now = timezone.now()
    received_at = received_at or now
    with transaction.atomic():
        if (
            external_id
            and InboundMessage.objects.filter(
                workspace=workspace, channel=channel, external_id=external_id
            ).exists()
        ):
            return None
        lead = _lead_for_address(workspace=workspace, address=address)
        conversation = _conversation_touch(
            workspace=workspace,
            address=address,
            lead=lead,
            line=line,
            chat_guid=chat_guid,
            text=text,
            at=received_at,
        )
        parent = _parent_message(workspace=workspace, lead=lead, address=address)
        opt_out = is_opt_out(text)
        inbound = InboundMessage(
            workspace=workspace,
            conversation=conversation,
            lead=lead,
            line=line,
            address=address,
            text=text or "",
            channel=channel,
            external_id=external_id or "",
            chat_guid=chat_guid or "",
            received_at=received_at,
            is_opt_out=opt_out,
            in_reply_to=parent,
            created_at=now,
        )
        try:
            with transaction.atomic():
                inbound.save(force_insert=True)
        except IntegrityError:
            # The same message arriving twice at once: the other one won.
            transaction.set_rollback(True)
            return None
        if lead is not None:
            Lead.objects.filter(pk=lead.pk).update(
                replied_at=Greatest(F("replied_at"), received_at)
                if lead.replied_at
                else received_at,
                updated_at=now,
            )
            lead.refresh_from_db(fields=["replied_at", "opted_out", "opted_out_at"])
            _cancel_stop_on_reply(workspace=workspace, lead=lead, now=now)
        if opt_out:
            _opt_out(workspace=workspace, lead=lead, address=address, text=text, now=now)
        if line is not None:
            line_safety.line_evidence_record(line_id=line.pk, kind="replies", at=received_at)
        if lead is not None:
            event_emit(
                workspace=workspace,
                event="message.reply",
                lead=lead,
                message_id=inbound.pk,
                text=inbound.text,
                campaign_id=parent.campaign_id if parent else None,
                # Built only when an endpoint subscribes: replies are a hot path.
                fields=lambda: reply_event_fields(inbound=inbound, lead=lead, parent=parent),
            )
    return inbound


WEBHOOK_PARENTS = 2


def reply_event_fields(*, inbound: InboundMessage, lead: Lead, parent: Message | None) -> dict:
    """What `message.reply` adds to the common payload (message-webhooks.mdx): the
    lead's flat fields, `repliedAtUtc`, the last two messages we sent the lead (of the
    answered message's campaign when it has one) as `parentMessages`, the answered
    message (`originalMessage`, with its CRM ids), and `data.reply`, the lead's
    `GET /api/replies` item."""
    workspace = inbound.workspace
    replied_at = iso_utc(inbound.received_at)
    sent = Message.objects.filter(workspace=workspace, lead=lead, sent_at__isnull=False)
    if parent is not None and parent.campaign_id:
        sent = sent.filter(campaign_id=parent.campaign_id)
    parents = [
        {
            "messageId": row.pk,
            "message": (row.rendered_body or row.body)[:REPLY_PREVIEW_CHARS],
            "sentAtUtc": iso_utc(row.sent_at),
            "batchId": row.batch_id or None,
            "stepIndex": row.step_index,
        }
        for row in sent.order_by("-sent_at", "-id")[:WEBHOOK_PARENTS]
    ]
    if parent is not None:
        parent = Message.objects.select_related("line").get(pk=parent.pk)
    lead_document_ = lead_document(lead)
    phone, _email = _lead_identity(lead, inbound.address)
    return {
        "firstName": lead.first_name or None,
        "lastName": lead.last_name or None,
        "phone": lead.phone or None,
        "listId": lead_document_["listId"],
        "fromLineId": inbound.line_id,
        "recipientName": lead.full_name or inbound.address,
        "repliedAtUtc": replied_at,
        "parentMessages": parents,
        "originalMessageId": parent.pk if parent else None,
        "originalMessage": message_document(parent) if parent else None,
        **integration_ids(parent),
        "data": {
            "reply": reply_items(workspace=workspace, lead_ids=[lead.pk])[lead.pk],
            "repliedAtUtc": replied_at,
            "parentMessages": parents,
            # The flat fields of integrations/webhooks.mdx.
            "messageId": inbound.pk,
            "recipientPhone": phone,
            "message": inbound.text,
            "status": "received",
            "lineId": inbound.line_id,
            "firstName": lead.first_name or None,
            "lastName": lead.last_name or None,
            "attachmentUrls": [],
            "attachmentNames": [],
        },
    }


def _conversation_touch(*, workspace, address, lead, line, chat_guid, text, at) -> Conversation:
    conversation, _ = Conversation.objects.get_or_create(
        workspace=workspace, address=address, defaults={"lead": lead, "created_at": at}
    )
    changes = {"unread_count": F("unread_count") + 1, "last_inbound_at": at}
    if conversation.last_message_at is None or conversation.last_message_at <= at:
        changes.update(last_message_at=at, last_message_text=(text or "")[:2000])
    if line is not None:
        changes["line"] = line
        # A reply in a group chat names the group: the 1:1 thread keeps its own chat.
        direct = direct_chat_guid(chat_guid, address)
        if direct:
            changes["chat_guid"] = direct
    if lead is not None and conversation.lead_id is None:
        changes["lead"] = lead
    Conversation.objects.filter(pk=conversation.pk).update(**changes)
    return conversation


def _parent_message(*, workspace, lead, address) -> Message | None:
    """Our latest message to this person: what the reply answers."""
    match = Q(recipient_phone=address) | Q(recipient_email=address) | Q(sent_address=address)
    if lead is not None:
        match |= Q(lead=lead)
    return (
        Message.objects.filter(match, workspace=workspace, sent_at__isnull=False)
        .order_by("-sent_at", "-created_at")
        .first()
    )


def _cancel_stop_on_reply(*, workspace, lead, now) -> list[str]:
    return message_cancel_waiting(
        workspace=workspace, lead=lead, reason=REPLIED_REASON, stop_on_reply_only=True, now=now
    )


def _opt_out(*, workspace, lead, address, text, now) -> None:
    dnc_add_value(
        workspace=workspace,
        kind="email" if is_email(address) else "phone",
        value=address,
        reason=f'Replied "{(text or "").strip()[:40]}"',
        source=DoNotContact.Source.REPLY,
    )
    if lead is not None:
        Lead.objects.filter(pk=lead.pk).update(opted_out=True, opted_out_at=now, updated_at=now)
        lead.opted_out, lead.opted_out_at = True, now
        lead_tags_add(workspace=workspace, pairs=[(lead.pk, [OPT_OUT_TAG])], source="rule")
        message_cancel_waiting(workspace=workspace, lead=lead, reason=OPT_OUT_REASON)


# --------------------------------------------------------------------------- relay events


def relay_event_handle(*, line: Line, event_type: str, data) -> None:
    """Apply one relay webhook (or one polled message) for `line`. Never raises for
    content it does not understand: the relay does not retry, and a poll finds it."""
    if not isinstance(data, dict):
        return
    if event_type == "new-message":
        if data.get("isFromMe"):
            _relay_outgoing(line, data)
        else:
            _relay_incoming(line, data)
    elif event_type == "updated-message":
        if data.get("isFromMe"):
            _relay_outgoing(line, data, announce_sent=False)
    elif event_type == "message-send-error" and data.get("isFromMe", True):
        _relay_outgoing(line, data, announce_sent=False)


def _relay_incoming(line: Line, data: dict) -> InboundMessage | None:
    handle = data.get("handle") if isinstance(data.get("handle"), dict) else {}
    sender = handle.get("address")
    guid = data.get("guid")
    if not isinstance(sender, str) or not isinstance(guid, str) or not guid:
        return None
    chats = data.get("chats") if isinstance(data.get("chats"), list) else []
    chat_guid = chats[0].get("guid", "") if chats and isinstance(chats[0], dict) else ""
    text = data.get("text") if isinstance(data.get("text"), str) else ""
    return inbound_record(
        workspace=line.workspace,
        address=sender,
        text=text,
        channel=InboundMessage.Channel.IMESSAGE,
        external_id=guid,
        line=line,
        chat_guid=chat_guid if isinstance(chat_guid, str) else "",
        received_at=_from_ms(data.get("dateCreated")),
    )


def _our_message(line: Line, data: dict) -> Message | None:
    guid = data.get("guid") if isinstance(data.get("guid"), str) else ""
    temp_guid = data.get("tempGuid")
    match = Q()
    if guid:
        match |= Q(external_message_id=guid)
    if isinstance(temp_guid, str) and temp_guid:
        with contextlib.suppress(ValueError):
            match |= Q(temp_guid=uuid.UUID(temp_guid))
    if not match:
        return None
    return (
        Message.objects.filter(match, workspace_id=line.workspace_id)
        .only("id", "external_message_id", "status")
        .first()
    )


def _relay_outgoing(line: Line, data: dict, *, announce_sent: bool = True) -> None:
    """One of our sends as the relay reports it: sent, then delivered / read, or failed."""
    message = _our_message(line, data)
    if message is None:
        return  # written on the Mac by hand, or by another tool
    guid = data.get("guid")
    if isinstance(guid, str) and guid and not message.external_message_id:
        Message.objects.filter(pk=message.pk, external_message_id="").update(
            external_message_id=guid
        )
    error = data.get("error")
    if isinstance(error, int) and not isinstance(error, bool) and error > 0:
        # After delivered / read this changes nothing (Message.ENTERED_FROM).
        message_advance(
            message_id=message.pk,
            new_status=Message.Status.FAILED,
            error=f"The relay reported send error {error}",
            data={"error": f"The relay reported send error {error}", "code": error},
        )
        return
    created = _from_ms(data.get("dateCreated"))
    if announce_sent:
        message_advance(message_id=message.pk, new_status=Message.Status.SENT, at=created)
    delivered = _from_ms(data.get("dateDelivered"))
    read = _from_ms(data.get("dateRead"))
    if delivered or read:
        message_advance(
            message_id=message.pk, new_status=Message.Status.DELIVERED, at=delivered or read
        )
    if read:
        message_advance(message_id=message.pk, new_status=Message.Status.READ, at=read)


def relay_webhook_prefix() -> str:
    """Where every line's callback URL starts: what on a relay is ours."""
    return f"{settings.SITE_URL}/api/relay/"


def relay_webhook_url(line: Line) -> str:
    return f"{relay_webhook_prefix()}{line.webhook_token}"


def relay_webhooks_sync(*, server_url: str, relay_password: str) -> list[str]:
    """Make the relay at `server_url` hold exactly one registration of ours for each
    active line on it, and none for a line deleted, deactivated or whose callback
    token changed. Registrations that are not ours (another URL) are left alone.
    Returns the callback URLs the relay now holds for our lines.

    Makes network calls: not to be used inside a transaction. Raises RelayError.
    """
    lines = list(Line.objects.filter(server_url=server_url, is_active=True))
    wanted = {relay_webhook_url(line): line for line in lines}
    client = get_client(SimpleNamespace(server_url=server_url, relay_password=relay_password))
    prefix = relay_webhook_prefix()
    held: set[str] = set()
    for hook in client.list_webhooks():
        url = hook["url"]
        if not url.startswith(prefix):
            continue
        if url in wanted and url not in held:
            held.add(url)
        else:
            client.delete_webhook(hook["id"])  # a gone line's, or a second one
    for url in wanted.keys() - held:
        client.register_webhook(url, list(RELAY_WEBHOOK_EVENTS))
    Line.objects.filter(pk__in=[line.pk for line in lines]).update(
        webhook_registered_at=timezone.now()
    )
    return sorted(wanted)


# The poll re-reads a little before the last message it saw: a message written on the
# Mac a moment late (clock skew, a slow database write) is still found; dedup makes
# the overlap harmless.
POLL_OVERLAP_MS = 60_000
POLL_PAGE = 1000
POLL_MAX_PAGES = 5


def relay_poll_line(*, line: Line, now: datetime | None = None) -> int:
    """Feed messages the relay has and a lost webhook may have missed into the same
    handler as webhooks. Returns the number of messages looked at.

    Makes network calls: not to be used inside a transaction. Raises RelayError.
    """
    now = now or timezone.now()
    try:
        # A relay that restarted or was reset may have lost our registration.
        relay_webhooks_sync(server_url=line.server_url, relay_password=line.relay_password)
    except RelayError as exc:
        # Polling still works without the webhook; the next poll tries again.
        logger.warning("Could not register the relay webhook of line %s: %s", line.pk, exc)
    # A line's history before it joined Tuco is not ours to import.
    floor = int(line.created_at.timestamp() * 1000)
    after = max(line.last_polled_ms - POLL_OVERLAP_MS, floor)
    client = get_client(line)
    seen = 0
    newest = line.last_polled_ms
    for _ in range(POLL_MAX_PAGES):
        messages = client.query_messages(after, POLL_PAGE)
        for data in messages:
            if not isinstance(data, dict):
                continue
            seen += 1
            created = data.get("dateCreated")
            if isinstance(created, int) and not isinstance(created, bool):
                newest = max(newest, created)
            try:
                if data.get("isFromMe"):
                    _relay_outgoing(line, data)
                else:
                    _relay_incoming(line, data)
            except Exception:
                logger.exception("Could not apply polled message %s", data.get("guid"))
        if len(messages) < POLL_PAGE or newest <= after:
            break
        after = newest
    if newest > line.last_polled_ms:
        Line.objects.filter(pk=line.pk, last_polled_ms__lt=newest).update(last_polled_ms=newest)
        line.last_polled_ms = newest
    return seen


def relay_poll_all(*, now: datetime | None = None) -> dict[str, int | str]:
    """Poll every active line; one line's failure does not stop the others."""
    outcome: dict[str, int | str] = {}
    for line in Line.objects.filter(is_active=True).select_related("workspace"):
        try:
            outcome[line.pk] = relay_poll_line(line=line, now=now)
        except RelayError as exc:
            outcome[line.pk] = exc.message
            logger.warning("Polling line %s failed: %s", line.pk, exc.message)
    return outcome


# --------------------------------------------------------------------------- Twilio


TWILIO_STATUSES = {
    "sent": Message.Status.SENT,
    "delivered": Message.Status.DELIVERED,
    "undelivered": Message.Status.FAILED,
    "failed": Message.Status.FAILED,
}


def twilio_inbound(*, workspace, params: dict) -> InboundMessage | None:
    return inbound_record(
        workspace=workspace,
        address=params.get("From", ""),
        text=params.get("Body", ""),
        channel=InboundMessage.Channel.SMS,
        external_id=params.get("MessageSid", "") or params.get("SmsSid", ""),
    )


def twilio_status(*, workspace, params: dict) -> bool:
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = TWILIO_STATUSES.get(params.get("MessageStatus") or params.get("SmsStatus") or "")
    if not sid or status is None:
        return False
    error = None
    if status == Message.Status.FAILED:
        code = params.get("ErrorCode") or "unknown"
        error = f"Twilio reported the SMS {params.get('MessageStatus')} (error {code})"
    return message_advance(
        workspace=workspace,
        external_id=sid,
        new_status=status,
        error=error,
        data={"error": error} if error else None,
    )


# --------------------------------------------------------------------------- replies


def _lead_identity(lead: Lead, address: str | None) -> tuple[str | None, str | None]:
    phone = lead.phone or None
    email = lead.email or None
    if address:
        if is_email(address):
            email = address
        else:
            phone = address
    return phone, email


def reply_items(
    *, workspace, lead_ids: list[str], inbound=None, campaign_id: str | None = None
) -> dict[str, dict]:
    """One `GET /api/replies` item per lead, in four queries whatever the number of leads."""
    if not lead_ids:
        return {}
    inbound = inbound if inbound is not None else InboundMessage.objects.filter(workspace=workspace)
    leads = {lead.pk: lead for lead in Lead.objects.filter(workspace=workspace, pk__in=lead_ids)}
    replies: dict[str, list] = {}
    for row in (
        inbound.filter(lead_id__in=lead_ids)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("lead_id")],
                order_by=[F("received_at").desc(), F("id").desc()],
            )
        )
        .filter(rank__lte=RECENT_LIMIT)
        .values("id", "lead_id", "text", "address", "received_at")
        .order_by("lead_id", "rank")
    ):
        replies.setdefault(row["lead_id"], []).append(row)
    sent = Message.objects.filter(workspace=workspace, lead_id__in=lead_ids, sent_at__isnull=False)
    if campaign_id:
        sent = sent.filter(campaign_id=campaign_id)
    parents: dict[str, list] = {}
    for row in (
        sent.annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("lead_id")],
                order_by=[F("sent_at").desc(), F("id").desc()],
            )
        )
        .filter(rank__lte=RECENT_LIMIT)
        .values("id", "lead_id", "body", "rendered_body", "sent_at", "batch_id", "step_index")
        .order_by("lead_id", "rank")
    ):
        parents.setdefault(row["lead_id"], []).append(row)
    items = {}
    for lead_id in lead_ids:
        lead = leads.get(lead_id)
        recent = replies.get(lead_id) or []
        if lead is None or not recent:
            continue
        latest = recent[0]
        phone, email = _lead_identity(lead, latest["address"])
        items[lead_id] = {
            "leadId": lead_id,
            "messageId": latest["id"],
            "message": latest["text"],
            "respondedAtUtc": iso_utc(latest["received_at"]),
            "recipientPhone": phone,
            "recipientEmail": email,
            "name": lead.full_name or None,
            "recentReplies": [
                {
                    "messageId": row["id"],
                    "message": row["text"][:REPLY_PREVIEW_CHARS],
                    "receivedAtUtc": iso_utc(row["received_at"]),
                }
                for row in recent
            ],
            "parentMessages": [
                {
                    "messageId": row["id"],
                    "message": (row["rendered_body"] or row["body"])[:REPLY_PREVIEW_CHARS],
                    "sentAtUtc": iso_utc(row["sent_at"]),
                    "batchId": row["batch_id"] or None,
                    "stepIndex": row["step_index"],
                }
                for row in parents.get(lead_id, [])
            ],
        }
    return items


def _exact(message: str, status: int) -> ServiceError:
    # The published API answers these with exactly {"error": message}.
    return ServiceError(message, status=status)


def replies_list(
    *,
    workspace,
    lead_id: str | None = None,
    campaign_id: str | None = None,
    recipient_phone: str | None = None,
    recipient_email: str | None = None,
    page: int = 1,
    limit: int = 50,
) -> dict:
    """Leads who replied, latest reply first: one item per lead (its latest reply, up to
    ten recent replies and up to ten of our messages before them).

    `campaignId` keeps replies that answer a message of that campaign (and only that
    campaign's messages as parents). Phone and email filters match the address the
    reply came from or any identifier of the lead.
    """
    inbound = InboundMessage.objects.filter(workspace=workspace, lead__isnull=False)
    if lead_id is not None:
        if not looks_like_id(lead_id):
            raise _exact("Invalid leadId", 400)
        if not Lead.objects.filter(workspace=workspace, pk=lead_id).exists():
            raise _exact("Lead not found or access denied", 404)
        inbound = inbound.filter(lead_id=lead_id)
    if campaign_id is not None:
        if not looks_like_id(campaign_id):
            raise _exact("Invalid campaignId", 400)
        if not campaign_exists(workspace=workspace, campaign_id=campaign_id):
            raise _exact("Campaign not found", 404)
        inbound = inbound.filter(in_reply_to__campaign_id=campaign_id)
    for value, normalize, name in (
        (recipient_phone, phone_normalize, "recipientPhone"),
        (recipient_email, normalize_email, "recipientEmail"),
    ):
        if value is None:
            continue
        try:
            address = normalize(value)
        except InvalidIdentifier:
            raise ValidationFailed(f"Invalid {name}") from None
        owners = LeadIdentifier.objects.filter(workspace=workspace, value=address).values("lead_id")
        inbound = inbound.filter(Q(address=address) | Q(lead_id__in=owners))
    by_lead = (
        inbound.values("lead_id").annotate(last=Max("received_at")).order_by("-last", "-lead_id")
    )
    total = by_lead.count()
    start = (page - 1) * limit
    lead_ids = [row["lead_id"] for row in by_lead[start : start + limit]] if total > start else []
    items = reply_items(
        workspace=workspace, lead_ids=lead_ids, inbound=inbound, campaign_id=campaign_id
    )
    return {
        "replies": [items[i] for i in lead_ids if i in items],
        "total": total,
        "page": page,
        "limit": limit,
        "totalPages": math.ceil(total / limit) if total else 0,
    }
