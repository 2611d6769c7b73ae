"""Webhooks out: endpoints, and the events written to their outbox.

`event_emit` writes one `WebhookDelivery` row per subscribed endpoint inside the
caller's transaction (so an event exists exactly when the change it describes was
committed) and queues its delivery after the commit. Delivery, signing and retries
live in `messaging.delivery` and `messaging.inbound_tasks`.

Campaign names: messaging never imports campaigns. The campaigns app sets
`campaign_name_resolver` (for example in its AppConfig.ready) to a callable
`(workspace_id: str, campaign_ids: list[str]) -> dict[str, str]` giving the name of
each campaign that exists in that workspace. Without it, payloads carry
`campaignName: null` and a campaign is taken to exist when a message of the
workspace carries its id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from messaging.models import Message, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from messaging.models.webhooks import TEST_EVENT, WEBHOOK_EVENTS
from tuco.api.fields import iso_utc
from tuco.errors import NotFound, ValidationFailed

CampaignNameResolver = Callable[[str, list[str]], dict[str, str]]
campaign_name_resolver: CampaignNameResolver | None = None


def set_campaign_name_resolver(resolver: CampaignNameResolver | None) -> None:
    global campaign_name_resolver
    campaign_name_resolver = resolver


def campaign_names(*, workspace_id: str, campaign_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted({c for c in campaign_ids if c})
    if not ids or campaign_name_resolver is None:
        return {}
    return dict(campaign_name_resolver(workspace_id, ids) or {})


def campaign_exists(*, workspace, campaign_id: str) -> bool:
    if campaign_name_resolver is not None:
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
    transaction.on_commit(lambda: _queue(ids))
    return ids


def _queue(delivery_ids: list[str]) -> None:
    from messaging.inbound_tasks import webhook_deliver

    for delivery_id in delivery_ids:
        webhook_deliver.delay(delivery_id)


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
    from messaging.delivery import target_check

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
        from messaging.delivery import target_check

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


# Delivery

# Seconds to wait after the n-th failed attempt; after the last one the delivery fails.
RETRY_SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 24 * 3600)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
# A claimed delivery is not due again for this long, so a worker that dies mid-request
# only delays it; the request timeout is far shorter.
LEASE_SECONDS = 120
CLAIM_BATCH = 100


def webhook_deliveries_claim(
    *, delivery_ids: Iterable[str] | None = None, now: datetime | None = None, limit: int = 100
) -> list[str]:
    """Claim due pending deliveries for this worker and count the attempt.

    SKIP LOCKED plus the pushed-forward `next_attempt_at` mean two workers never hold
    the same row: a second worker skips it while the first holds the lock, and finds
    it not due once the claim has committed.
    """
    now = now or timezone.now()
    rows = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    )
    if delivery_ids is not None:
        rows = rows.filter(pk__in=list(delivery_ids))
    with transaction.atomic():
        ids = list(
            rows.select_for_update(skip_locked=True)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids).update(
                next_attempt_at=now + timedelta(seconds=LEASE_SECONDS),
                attempts=F("attempts") + 1,
            )
    return ids


def webhook_delivery_attempt(*, delivery_id: str, now: datetime | None = None) -> str:
    """Send a claimed delivery once and record the outcome; returns the new status.

    Makes a network call: call it outside any transaction, after the claim committed.
    """
    from messaging.delivery import post_signed

    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if delivery.status != WebhookDelivery.Status.PENDING:
        return delivery.status
    if not endpoint.is_active:
        WebhookDelivery.objects.filter(pk=delivery.pk, status="pending").update(
            status=WebhookDelivery.Status.CANCELLED,
            last_error=f"Endpoint disabled: {endpoint.disabled_reason}"[:2000],
        )
        return WebhookDelivery.Status.CANCELLED
    outcome = post_signed(
        url=endpoint.url,
        secret=endpoint.secret,
        webhook_id=delivery.pk,
        event=delivery.event,
        payload=delivery.payload,
        now=(now or timezone.now()).timestamp(),
    )
    return _record(delivery=delivery, outcome=outcome, now=now or timezone.now())


@transaction.atomic
def _record(*, delivery: WebhookDelivery, outcome, now: datetime) -> str:
    WebhookAttempt.objects.create(
        delivery=delivery,
        attempted_at=now,
        status_code=outcome.status_code,
        error=outcome.error[:2000],
        response_body=outcome.response_body,
        duration_ms=outcome.duration_ms,
    )
    changes = {"last_status_code": outcome.status_code, "last_error": outcome.error[:2000]}
    if outcome.ok:
        changes.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now)
    elif outcome.gone:
        changes.update(status=WebhookDelivery.Status.FAILED)
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
            is_active=False,
            disabled_reason="The endpoint answered 410 Gone",
            updated_at=now,
        )
    elif delivery.attempts >= MAX_ATTEMPTS:
        changes.update(status=WebhookDelivery.Status.FAILED)
    else:
        delay = RETRY_SCHEDULE[max(delivery.attempts, 1) - 1]
        changes.update(next_attempt_at=now + timedelta(seconds=delay))
    WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING).update(
        **changes
    )
    return changes.get("status", WebhookDelivery.Status.PENDING)


def webhook_endpoint_test(*, workspace, endpoint_id: str, now: datetime | None = None) -> dict:
    """Send a signed `webhook.test` event now and report what the endpoint answered.

    Recorded as a delivery with one attempt, never retried.
    """
    from messaging.delivery import post_signed

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
    WebhookAttempt.objects.create(
        delivery=delivery,
        attempted_at=now,
        status_code=outcome.status_code,
        error=outcome.error[:2000],
        response_body=outcome.response_body,
        duration_ms=outcome.duration_ms,
    )
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


def webhook_delivery_resend(*, delivery_id: str, now: datetime | None = None) -> None:
    """Queue a delivery again (admin action): same webhook-id, due now."""
    now = now or timezone.now()
    WebhookDelivery.objects.filter(pk=delivery_id).exclude(event=TEST_EVENT).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=now, attempts=0
    )
    transaction.on_commit(lambda: _queue([delivery_id]))


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
