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

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from messaging.delivery import post_signed, target_check
from messaging.models import Message, WebhookDelivery, WebhookEndpoint
from messaging.models.webhooks import TEST_EVENT, WEBHOOK_EVENTS
from messaging.signals import campaign_names_requested
from messaging.webhook_delivery import attempt_record, deliveries_queue
from tuco.api.fields import iso_utc
from tuco.errors import NotFound, ValidationFailed


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
    now: datetime | None = None,
) -> dict:
    """The body customers receive: `{event, timestamp, workspaceId, messageId, message,
    leadId, lead, campaignId, campaignName, data}`."""
    if lead is None and message is not None:
        lead = message.lead
    if message is not None:
        message_id = message_id or message.pk
        text = text if text is not None else (message.rendered_body or message.body)
        campaign_id = campaign_id or message.campaign_id
    campaign_id = campaign_id or None
    name = None
    if campaign_id:
        name = campaign_names(workspace_id=workspace.pk, campaign_ids=[campaign_id]).get(
            campaign_id
        )
    return {
        "event": event,
        "timestamp": iso_utc(now or timezone.now()),
        "workspaceId": workspace.pk,
        "messageId": message_id,
        "message": text,
        "leadId": lead.pk if lead is not None else None,
        "lead": lead_summary(lead),
        "campaignId": campaign_id,
        "campaignName": name,
        "data": data or {},
    }


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
) -> list[str]:
    """Write the outbox rows for `event` in the caller's transaction; deliver after commit.

    Returns the delivery ids (empty when no active endpoint subscribes to the event).
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
    payload = event_payload(
        workspace=workspace,
        event=event,
        message=message,
        lead=lead,
        data=data,
        message_id=message_id,
        text=text,
        campaign_id=campaign_id,
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


def _clean_events(events) -> list[str]:
    if not isinstance(events, list | tuple) or not events:
        raise ValidationFailed("Provide at least one event", field="events")
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise ValidationFailed(
            f"Unknown event {unknown[0]!r}. Allowed: {', '.join(WEBHOOK_EVENTS)}", field="events"
        )
    return list(dict.fromkeys(events))


def webhook_endpoint_create(
    *, workspace, url: str, events: list[str], name: str, description: str = ""
) -> WebhookEndpoint:
    target_check(url)
    endpoint = WebhookEndpoint(
        workspace=workspace,
        url=url,
        events=_clean_events(events),
        name=name,
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
    """Change the given fields (None leaves one as it is)."""
    endpoint = webhook_endpoint_get(workspace=workspace, endpoint_id=endpoint_id)
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if url is not None:
        target_check(url)
        endpoint.url = url
    if events is not None:
        endpoint.events = _clean_events(events)
    if name is not None:
        endpoint.name = name
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


def webhook_test_payload(*, workspace, endpoint: WebhookEndpoint) -> dict:
    return {
        **event_payload(workspace=workspace, event=TEST_EVENT),
        "data": {"webhookId": endpoint.pk, "test": True},
    }


def webhook_endpoint_test(*, workspace, endpoint_id: str, now: datetime | None = None) -> dict:
    """Send a signed `webhook.test` event now and report what the endpoint answered.

    Recorded as a delivery with one attempt, never retried.
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
        event=TEST_EVENT,
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
    return {
        "success": outcome.ok,
        "deliveryId": delivery.pk,
        "statusCode": outcome.status_code,
        "error": outcome.error or None,
        "durationMs": outcome.duration_ms,
    }


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
