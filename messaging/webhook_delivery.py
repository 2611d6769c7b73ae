"""Delivering the webhook outbox: claim due rows, send each once, record the outcome
and retry on a schedule. The rows are written by `messaging.webhooks.event_emit`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from messaging.delivery import post_signed
from messaging.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from messaging.models.webhooks import TEST_EVENT


def deliveries_queue(delivery_ids: list[str]) -> None:
    """Hand each delivery to a worker now (call it once the rows are committed)."""
    from messaging.tasks import webhook_deliver

    for delivery_id in delivery_ids:
        webhook_deliver.delay(delivery_id)


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
            rows.select_for_update(no_key=True, skip_locked=True)
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


def attempt_record(*, delivery: WebhookDelivery, outcome, now: datetime) -> WebhookAttempt:
    """Keep one attempt's outcome in the delivery's history."""
    return WebhookAttempt.objects.create(
        delivery=delivery,
        attempted_at=now,
        status_code=outcome.status_code,
        error=outcome.error[:2000],
        response_body=outcome.response_body,
        duration_ms=outcome.duration_ms,
    )


def endpoint_health_record(*, endpoint_id: str, ok: bool, now: datetime) -> None:
    """Keep an endpoint's delivery health (`lastTriggeredAt`, `lastSuccessAt`,
    `lastFailureAt`, `failureCount`: failures since the last success)."""
    if ok:
        changes = {"last_success_at": now, "failure_count": 0}
    else:
        changes = {"last_failure_at": now, "failure_count": F("failure_count") + 1}
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(last_triggered_at=now, **changes)


@transaction.atomic
def _record(*, delivery: WebhookDelivery, outcome, now: datetime) -> str:
    attempt_record(delivery=delivery, outcome=outcome, now=now)
    endpoint_health_record(endpoint_id=delivery.endpoint_id, ok=outcome.ok, now=now)
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


def webhook_delivery_resend(*, delivery_id: str, now: datetime | None = None) -> None:
    """Queue a delivery again (admin action): same webhook-id, due now."""
    now = now or timezone.now()
    WebhookDelivery.objects.filter(pk=delivery_id).exclude(event=TEST_EVENT).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=now, attempts=0
    )
    transaction.on_commit(lambda: deliveries_queue([delivery_id]), robust=True)
