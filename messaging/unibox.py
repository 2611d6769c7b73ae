"""The unified inbox: one thread per recipient, outbound and inbound merged."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from leads.models import Lead
from leads.normalize import InvalidIdentifier, normalize_email
from messaging.addresses import phone_normalize
from messaging.models import Conversation, FallbackConfig, InboundMessage, Message
from messaging.webhooks import lead_summary
from tuco.api.fields import iso_utc
from tuco.errors import NotFound, ServiceError, ValidationFailed
from tuco.ids import looks_like_id

CONVERSATION_NOT_FOUND = "Conversation not found"
THREAD_LIMIT = 500


def conversation_list(*, workspace, unread_only: bool = False):
    rows = Conversation.objects.filter(workspace=workspace).select_related("lead", "line")
    if unread_only:
        rows = rows.filter(unread_count__gt=0)
    return rows.order_by("-last_message_at", "-created_at", "-id")


def conversation_item(conversation: Conversation) -> dict:
    address = conversation.address
    email = "@" in address
    return {
        "_id": conversation.pk,
        "recipient": address,
        "recipientPhone": None if email else address,
        "recipientEmail": address if email else None,
        "unreadCount": conversation.unread_count,
        "lastMessage": conversation.last_message_text or None,
        "lastMessageAt": iso_utc(conversation.last_message_at),
        "lastInboundAt": iso_utc(conversation.last_inbound_at),
        "leadId": conversation.lead_id,
        "lead": lead_summary(conversation.lead),
        "lineId": conversation.line_id,
        "createdAt": iso_utc(conversation.created_at),
    }


def conversation_resolve(*, workspace, conversation_id=None, lead_id=None) -> Conversation:
    """A conversation by its id, its recipient's phone or email, or its lead.

    A lead with several conversations resolves to the one with the latest message.
    """
    rows = Conversation.objects.filter(workspace=workspace).select_related("lead", "line")
    conversation = None
    if conversation_id:
        value = str(conversation_id).strip()
        if looks_like_id(value):
            conversation = rows.filter(pk=value).first()
        if conversation is None:
            address = _address(value)
            if address:
                conversation = rows.filter(address=address).first()
        if conversation is None:
            raise NotFound(CONVERSATION_NOT_FOUND)
        return conversation
    if lead_id:
        if (
            not looks_like_id(lead_id)
            or not Lead.objects.filter(workspace=workspace, pk=lead_id).exists()
        ):
            raise ServiceError("Lead not found or access denied", status=404)
        conversation = (
            rows.filter(lead_id=lead_id).order_by("-last_message_at", "-created_at").first()
        )
        if conversation is None:
            raise NotFound(CONVERSATION_NOT_FOUND)
        return conversation
    raise ValidationFailed("Either conversationId or leadId is required")


def _address(value: str) -> str | None:
    try:
        return normalize_email(value) if "@" in value else phone_normalize(value)
    except InvalidIdentifier:
        return None


def _outbound_match(conversation: Conversation) -> Q:
    address = conversation.address
    match = Q(sent_address=address) | Q(recipient_phone=address) | Q(recipient_email=address)
    return match


def conversation_thread(
    *, workspace, conversation: Conversation, mark_read: bool = True, limit: int = THREAD_LIMIT
) -> list[dict]:
    """The thread, oldest first: our messages to the address and its replies.

    Marks the replies read and the conversation's unread count zero.
    """
    outbound = (
        Message.objects.filter(_outbound_match(conversation), workspace=workspace)
        .exclude(status=Message.Status.CANCELLED)
        .values(
            "id",
            "body",
            "rendered_body",
            "status",
            "message_type",
            "line_id",
            "lead_id",
            "created_at",
            "sent_at",
            "delivered_at",
            "read_at",
        )
        .order_by("-created_at")[:limit]
    )
    inbound = (
        InboundMessage.objects.filter(workspace=workspace, conversation=conversation)
        .values("id", "text", "channel", "line_id", "lead_id", "received_at", "is_read")
        .order_by("-received_at")[:limit]
    )
    items = [
        {
            "_id": row["id"],
            "direction": "outbound",
            "message": row["rendered_body"] or row["body"],
            "messageType": row["message_type"],
            "status": row["status"],
            "lineId": row["line_id"],
            "leadId": row["lead_id"],
            "at": row["sent_at"] or row["created_at"],
            "sentAt": iso_utc(row["sent_at"]),
            "deliveredAt": iso_utc(row["delivered_at"]),
            "readAt": iso_utc(row["read_at"]),
            "isRead": True,
        }
        for row in outbound
    ] + [
        {
            "_id": row["id"],
            "direction": "inbound",
            "message": row["text"],
            "messageType": row["channel"],
            "status": "received",
            "lineId": row["line_id"],
            "leadId": row["lead_id"],
            "at": row["received_at"],
            "receivedAt": iso_utc(row["received_at"]),
            "isRead": row["is_read"],
        }
        for row in inbound
    ]
    items.sort(key=lambda item: (item["at"], item["_id"]))
    items = items[-limit:]
    for item in items:
        item["at"] = iso_utc(item["at"])
    if mark_read:
        conversation_mark_read(workspace=workspace, conversation=conversation)
    return items


@transaction.atomic
def conversation_mark_read(*, workspace, conversation: Conversation) -> int:
    marked = InboundMessage.objects.filter(
        workspace=workspace, conversation=conversation, is_read=False
    ).update(is_read=True)
    Conversation.objects.filter(pk=conversation.pk).update(unread_count=0)
    return marked


def unibox_send_reply(*, workspace, text: str, conversation_id=None, lead_id=None) -> Message:
    """Queue a reply from the line that last talked to the recipient (pinned to it)."""
    from messaging.services import message_enqueue

    # The dashboard's reply form keeps whitespace, so a blank text is refused here.
    if not text.strip():
        raise ValidationFailed("This field may not be blank.", field="message")
    conversation = conversation_resolve(
        workspace=workspace, conversation_id=conversation_id, lead_id=lead_id
    )
    line = conversation.line
    address = conversation.address
    email = "@" in address
    message_type = Message.Type.IMESSAGE
    if line is None or not line.is_active:
        # A thread that only ever went over Twilio is answered the same way.
        config = FallbackConfig.objects.filter(workspace=workspace).first()
        if line is None and not email and config is not None and config.is_configured:
            message_type = Message.Type.SMS
        else:
            raise ValidationFailed(
                "No active line has talked to this recipient yet", code="NO_CONVERSATION_LINE"
            )
    from messaging.dnc import dnc_blocked_address

    if dnc_blocked_address(workspace=workspace, addresses=[address]):
        raise ValidationFailed("Recipient is on the do-not-contact list", code="DO_NOT_CONTACT")
    with transaction.atomic():
        message = message_enqueue(
            workspace=workspace,
            body=text,
            message_type=message_type,
            lead=conversation.lead,
            recipient_phone="" if email else address,
            recipient_email=address if email else "",
            line=line,
            now=timezone.now(),
        )
    return message
