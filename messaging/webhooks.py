"""Webhooks out: endpoints, and the events written to their outbox.

`event_emit` writes one `WebhookDelivery` row per subscribed endpoint inside the
caller's transaction (so an event exists exactly when the change it describes was
committed) and queues its delivery after the commit. Delivery and retries live in
`messaging.webhook_delivery`, signing and the HTTP request in `messaging.delivery`.

Campaign names: messaging never imports campaigns; it asks for them with the
`campaign_names_requested` signal. Without a receiver, payloads carry
`campaignName: null` and a campaign is taken to exist when a message of the
workspace carries its id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from messaging.delivery import post_signed, target_check
from messaging.documents import integration_ids, lead_document, message_document
from messaging.models import Message, WebhookDelivery, WebhookEndpoint
from messaging.models.webhooks import TEST_EVENT, WEBHOOK_EVENTS
from messaging.signals import campaign_names_requested
from messaging.webhook_delivery import attempt_record, deliveries_queue
from tuco.api.fields import iso_utc
from tuco.errors import NotFound, ValidationFailed
from tuco.models import Membership


def campaign_names(*, workspace_id: str, campaign_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted({c for c in campaign_ids if c})
    if not ids:
        return {}
    names = {}
    for _receiver, answer in campaign_names_requested.send(
        sender=Message, workspace_id=workspace_id, campaign_ids=ids
    ):
        names.update(answer or {})
    return names


def campaign_exists(*, workspace, campaign_id: str) -> bool:
    if campaign_names_requested.has_listeners(Message):
        return campaign_id in campaign_names(workspace_id=workspace.pk, campaign_ids=[campaign_id])
    return Message.objects.filter(workspace=workspace, campaign_id=campaign_id).exists()


# Payloads


def lead_summary(lead) -> dict | None:
    if lead is None:
        return None
    return {
        "_id": lead.pk,
        "firstName": lead.first_name,
        "lastName": lead.last_name,
        "email": lead.email,
        "phone": lead.phone,
        "companyName": lead.company_name,
        "optedOut": lead.opted_out,
        "availabilityStatus": lead.availability_status or None,
    }


def contact_owner_email(workspace, lead=None) -> str | None:
    """The lead's contact owner: the one stored on the lead, else the published
    default, the workspace's first user."""
    if lead is not None and lead.contact_owner_email:
        return lead.contact_owner_email
    return (
        Membership.objects.filter(workspace=workspace)
        .order_by("created_at", "pk")
        .values_list("user__email", flat=True)
        .first()
    ) or None


# Message events whose `message` is the full message object (message-webhooks.mdx).
MESSAGE_EVENTS = ("message.sent", "message.delivered", "message.failed", "message.fallback",
                  "message.opened")  # fmt: skip


def _flat_data(*, message_id, text, status, line_id, lead, phone, attachment_urls, names) -> dict:
    """The flat fields integrations/webhooks.mdx shows under `data` (its SMS fallback and
    CRM examples read `data.recipientPhone` and `data.message`)."""
    return {
        "messageId": message_id,
        "recipientPhone": phone or None,
        "message": text,
        "status": status,
        "lineId": line_id,
        "firstName": (lead.first_name or None) if lead is not None else None,
        "lastName": (lead.last_name or None) if lead is not None else None,
        "attachmentUrls": list(attachment_urls),
        "attachmentNames": names,
    }


def event_payload(
    *,
    workspace,
    event: str,
    message: Message | None = None,
    lead=None,
    data: dict | None = None,
    message_id: str | None = None,
    text: str | None = None,
    campaign_id: str | None = None,
    fields: dict | Callable[[], dict] | None = None,
    now: datetime | None = None,
) -> dict:
    """The body customers receive.

    Every event: `{event, timestamp, workspaceId, messageId, message, leadId, lead,
    campaignId, campaignName, ghlContactId, ghlLocationId, hsPortalId, hsContactId,
    data}`. For a message event (`message` given) `message` is the full message
    object and `data` adds the flat fields of integrations/webhooks.mdx; otherwise
    `message` is `text`. `fields` (or what it returns, when it is a function) adds or
    replaces top-level fields (the reply's).
    """
    if lead is None and message is not None:
        lead = message.lead
    if message is not None:
        message_id = message_id or message.pk
        campaign_id = campaign_id or message.campaign_id
        body = message_document(message)
        data = {
            **_flat_data(
                message_id=message.pk,
                text=message.rendered_body or message.body,
                status=message.status,
                line_id=message.line_id,
                lead=lead,
                phone=message.recipient_phone or message.sent_address,
                attachment_urls=message.attachment_urls or [],
                names=body["attachmentNames"],
            ),
            **(data or {}),
        }
    else:
        body = text
    campaign_id = campaign_id or None
    name = None
    if campaign_id:
        name = campaign_names(workspace_id=workspace.pk, campaign_ids=[campaign_id]).get(
            campaign_id
        )
    payload = {
        "event": event,
        "timestamp": iso_utc(now or timezone.now()),
        "workspaceId": workspace.pk,
        "messageId": message_id,
        "message": body,
        "leadId": lead.pk if lead is not None else None,
        "lead": lead_document(lead),
        "contactOwnerEmail": contact_owner_email(workspace, lead) if lead is not None else None,
        "campaignId": campaign_id,
        "campaignName": name,
        **integration_ids(message),
        "data": data or {},
    }
    payload.update((fields() if callable(fields) else fields) or {})
    return payload


def event_emit(
    *,
    workspace,
    event: str,
    message: Message | None = None,
    lead=None,
    data: dict | None = None,
    message_id: str | None = None,
    text: str | None = None,
    campaign_id: str | None = None,
    fields: dict | Callable[[], dict] | None = None,
) -> list[str]:
    """Write the outbox rows for `event` in the caller's transaction; deliver after commit.

    Returns the delivery ids (empty when no active endpoint subscribes to the event).
    A message event describes `message` as it is in the database now (the caller's
    transaction included), so every field is the one the change left.
    """
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(workspace=workspace, is_active=True).only(
            "id", "events"
        )
        if event in endpoint.events
    ]
    if not endpoints:
        return []
    if message is not None:
        message = Message.objects.select_related("lead", "line").get(pk=message.pk)
        if lead is None or lead.pk == message.lead_id:
            lead = message.lead
    payload = event_payload(
        workspace=workspace,
        event=event,
        message=message,
        lead=lead,
        data=data,
        message_id=message_id,
        text=text,
        campaign_id=campaign_id,
        fields=fields,
    )
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                workspace=workspace,
                endpoint_id=endpoint.pk,
                event=event,
                payload=payload,
                next_attempt_at=now,
                created_at=now,
            )
            for endpoint in endpoints
        ]
    )
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: deliveries_queue(ids), robust=True)
    return ids


# Endpoints


class WebhookInputError(ValidationFailed):
    """A published validation text (create-webhook.mdx, update-webhook.mdx): the API
    answers it exactly, without the field's name; forms still put it on the field."""

    @property
    def text(self) -> str:
        return self.message


URL_REQUIRED = "URL is required"
URL_INVALID = "Invalid URL format"
EVENTS_REQUIRED = "At least one event must be selected"
NAME_REQUIRED = "Name is required"


def _clean_url(url) -> str:
    if not isinstance(url, str) or not url.strip():
        raise WebhookInputError(URL_INVALID, field="url")
    url = url.strip()
    if len(url) > URL_MAX_LENGTH:
        raise WebhookInputError(URL_INVALID, field="url")
    try:
        target_check(url)
    except ValidationFailed as exc:
        if exc.code == "WEBHOOK_TARGET_NOT_ALLOWED":
            raise
        raise WebhookInputError(URL_INVALID, field="url") from None
    return url


def _clean_events(events) -> list[str]:
    if not isinstance(events, list | tuple) or not events:
        raise WebhookInputError(EVENTS_REQUIRED, field="events")
    unknown = [str(e) for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise WebhookInputError(f"Invalid events: {', '.join(unknown)}", field="events")
    return list(dict.fromkeys(events))


def _clean_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise WebhookInputError(NAME_REQUIRED, field="name")
    if len(name.strip()) > NAME_MAX_LENGTH:
        raise ValidationFailed(f"must be at most {NAME_MAX_LENGTH} characters", field="name")
    return name.strip()


URL_MAX_LENGTH = 2000
NAME_MAX_LENGTH = 200


def webhook_endpoint_create(
    *, workspace, url: str, events: list[str], name: str, description: str = ""
) -> WebhookEndpoint:
    """A new endpoint, with a new secret. Checked in the published order: the URL,
    the events, the name."""
    if url is None or (isinstance(url, str) and not url.strip()):
        raise WebhookInputError(URL_REQUIRED, field="url")
    endpoint = WebhookEndpoint(
        workspace=workspace,
        url=_clean_url(url),
        events=_clean_events(events),
        name=_clean_name(name),
        description=description or "",
    )
    endpoint.save(force_insert=True)
    return endpoint


def webhook_endpoint_get(*, workspace, endpoint_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(workspace=workspace, pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("Webhook not found")
    return endpoint


@transaction.atomic
def webhook_endpoint_update(
    *,
    workspace,
    endpoint_id: str,
    url: str | None = None,
    events: list[str] | None = None,
    name: str | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookEndpoint:
    """Change the given fields (None leaves one as it is); `events` replaces the list."""
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint.pk)
    if url is not None:
        endpoint.url = _clean_url(url)
    if events is not None:
        endpoint.events = _clean_events(events)
    if name is not None:
        endpoint.name = _clean_name(name)
    if description is not None:
        endpoint.description = description
    if is_active is not None:
        endpoint.is_active = is_active
        if endpoint.is_active:
            endpoint.disabled_reason = ""
        elif not endpoint.disabled_reason:
            endpoint.disabled_reason = "Disabled by a user"
    endpoint.updated_at = timezone.now()
    endpoint.save()
    return endpoint


def webhook_endpoint_delete(*, workspace, endpoint_id: str) -> None:
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    endpoint.delete()


TEST_TEXT = "This is a health check test webhook from Tuco AI"


def webhook_test_payload(*, workspace, endpoint: WebhookEndpoint) -> dict:
    """The test event of test-webhook.mdx: the endpoint's first subscribed event,
    with `data.test: true`."""
    return {
        "event": endpoint.events[0] if endpoint.events else TEST_EVENT,
        "timestamp": iso_utc(timezone.now()),
        "workspaceId": workspace.pk,
        "data": {"test": True, "message": TEST_TEXT, "webhookId": endpoint.pk},
    }


def webhook_endpoint_test(*, workspace, endpoint_id: str, now: datetime | None = None) -> dict:
    """Send a signed test event now and report what the endpoint answered, in the
    shape of test-webhook.mdx (plus ours: `deliveryId`, `durationMs`).

    Recorded as a delivery (event `webhook.test`) with one attempt, never retried;
    it leaves the endpoint's delivery health as it is. Makes a network call: not to
    be used inside a transaction.
    """
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    now = now or timezone.now()
    payload = webhook_test_payload(workspace=workspace, endpoint=endpoint)
    delivery = WebhookDelivery.objects.create(
        workspace=workspace,
        endpoint=endpoint,
        event=TEST_EVENT,
        payload=payload,
        status=WebhookDelivery.Status.PENDING,
        attempts=1,
        next_attempt_at=now,
        created_at=now,
    )
    outcome = post_signed(
        url=endpoint.url,
        secret=endpoint.secret,
        webhook_id=delivery.pk,
        event=payload["event"],
        payload=payload,
        now=now.timestamp(),
    )
    attempt_record(delivery=delivery, outcome=outcome, now=now)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.DELIVERED if outcome.ok else WebhookDelivery.Status.FAILED,
        delivered_at=now if outcome.ok else None,
        last_status_code=outcome.status_code,
        last_error=outcome.error[:2000],
    )
    result: dict = {"success": outcome.ok}
    if outcome.ok:
        result["message"] = "Health check passed"
    else:
        result["error"] = outcome.error
        if outcome.status_code is not None:
            result["details"] = outcome.response_body
    if outcome.status_code is not None:
        result["statusCode"] = outcome.status_code
        if outcome.ok:
            result["response"] = outcome.response_body
    result.update(deliveryId=delivery.pk, durationMs=outcome.duration_ms)
    return result


def lead_availability_emit(*, workspace, results) -> int:
    """`lead.availability_updated` for each result (leads.availability.LeadResult)."""
    from leads.models import Lead

    results = [r for r in results if getattr(r, "lead_id", None)]
    subscribed = any(
        "lead.availability_updated" in endpoint.events
        for endpoint in WebhookEndpoint.objects.filter(workspace=workspace, is_active=True).only(
            "events"
        )
    )
    if not results or not subscribed:
        return 0
    leads = Lead.objects.in_bulk([r.lead_id for r in results])
    emitted = 0
    for result in results:
        lead = leads.get(result.lead_id)
        if lead is None:
            continue
        event_emit(
            workspace=workspace,
            event="lead.availability_updated",
            lead=lead,
            data={
                "available": result.available,
                "status": result.status,
                "address": result.address or None,
                "checkedAddresses": list(getattr(result, "checked_addresses", ()) or ()),
                "checkedAt": iso_utc(lead.availability_checked_at),
            },
        )
        emitted += 1
    return emitted


def on_lead_availability_updated(sender, workspace, results, **kwargs):
    """Receiver of leads.signals.lead_availability_updated (connected in
    MessagingConfig.ready()). Sent inside the transaction that wrote the results: the
    outbox rows commit with them."""
    lead_availability_emit(workspace=workspace, results=results)
