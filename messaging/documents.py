"""The message and lead objects as the API and the webhook events show them.

One shape for both: the webhook pages call `message` "the full message document"
and `lead` "the full lead", the same objects `POST /api/messages` and
`GET /api/messages` answer with. Built by hand: they are on every hot path.
"""

from __future__ import annotations

from messaging.attachments import display_names
from messaging.models import Message
from tuco.api.fields import iso_utc


def integration_ids(message: Message | None) -> dict:
    """The CRM ids a message was sent with (GoHighLevel, HubSpot), null when not given."""
    return {
        "ghlContactId": (message.ghl_contact_id or None) if message else None,
        "ghlLocationId": (message.ghl_location_id or None) if message else None,
        "hsPortalId": (message.hs_portal_id or None) if message else None,
        "hsContactId": (message.hs_contact_id or None) if message else None,
    }


def message_document(message: Message) -> dict:
    """The message object (messages.mdx), plus ours: subject, cancelReason, attempts.

    Reads `message.line` for the line's phone and email: load it with the message
    (select_related) when documenting many."""
    line = message.line if message.line_id else None
    return {
        "_id": message.pk,
        "message": message.body,
        "messageType": message.message_type,
        "status": message.status,
        "direction": "sent",
        "fromLineId": message.line_id,
        "fromLinePhone": (line.phone or None) if line else None,
        "fromLineEmail": (line.email or None) if line else None,
        "recipientPhone": message.recipient_phone or None,
        "recipientEmail": message.recipient_email or None,
        "recipientName": message.recipient_name or None,
        "leadId": message.lead_id,
        "workspaceId": message.workspace_id,
        "createdByUserId": str(message.created_by_id) if message.created_by_id else None,
        "campaignId": message.campaign_id or None,
        "stepIndex": message.step_index,
        "batchId": message.batch_id or None,
        "scheduledDate": iso_utc(message.scheduled_date),
        "settings": {
            "timezone": message.timezone or None,
            "sendWindowStart": message.send_window_start or None,
            "sendWindowEnd": message.send_window_end or None,
            "allowedDaysOfWeek": list(message.allowed_days or []),
        },
        "sentAt": iso_utc(message.sent_at),
        "deliveredAt": iso_utc(message.delivered_at),
        "readAt": iso_utc(message.read_at),
        "undelivered": message.undelivered_at is not None and message.delivered_at is None,
        "undeliveredAt": iso_utc(message.undelivered_at),
        "holdReason": (message.hold_reason or None) if message.status in Message.WAITING else None,
        "externalMessageId": message.external_message_id or None,
        "errorMessage": message.error_message or None,
        "checkedAddresses": [
            item["address"] if isinstance(item, dict) else str(item)
            for item in message.checked_addresses or []
        ],
        "sendFallbackSmsOnFailed": message.send_fallback_sms_on_failed,
        "attachmentUrls": list(message.attachment_urls or []),
        "attachmentNames": display_names(message.attachment_urls or [], message.attachment_names),
        **integration_ids(message),
        "subject": message.subject or None,
        "cancelReason": message.cancel_reason or None,
        "attempts": message.attempts,
        "createdAt": iso_utc(message.created_at),
        "updatedAt": iso_utc(message.updated_at),
    }


def lead_document(lead, *, list_id: str | None = None) -> dict | None:
    """The lead as webhook events carry it (`lead`): its contact fields, the list it
    is in (`listId`: the first it joined, unless given), source and state."""
    if lead is None:
        return None
    if list_id is None:
        list_id = (
            lead.memberships.order_by("created_at", "pk").values_list("lead_list_id", flat=True)
        ).first()
    return {
        "_id": lead.pk,
        "firstName": lead.first_name or None,
        "lastName": lead.last_name or None,
        "email": lead.email or None,
        "phone": lead.phone or None,
        "altPhone1": lead.alt_phone1 or None,
        "altPhone2": lead.alt_phone2 or None,
        "altPhone3": lead.alt_phone3 or None,
        "altEmail1": lead.alt_email1 or None,
        "altEmail2": lead.alt_email2 or None,
        "altEmail3": lead.alt_email3 or None,
        "companyName": lead.company_name or None,
        "jobTitle": lead.job_title or None,
        "listId": list_id,
        "workspaceId": lead.workspace_id,
        "source": lead.source or None,
        "optedOut": lead.opted_out,
        "availabilityStatus": lead.availability_status or None,
    }
