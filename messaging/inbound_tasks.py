"""Celery tasks for webhooks out and relay polling: load ids, call a service."""

import logging

from celery import shared_task

from lines.models import Line
from lines.relay import RelayError
from messaging import inbound, webhooks

logger = logging.getLogger(__name__)


@shared_task
def webhook_deliver(delivery_id: str) -> str | None:
    """Deliver one outbox row now, if it is still due and no other worker holds it."""
    if not webhooks.webhook_deliveries_claim(delivery_ids=[delivery_id], limit=1):
        return None
    return webhooks.webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task
def webhook_deliver_due() -> int:
    """Deliver every due delivery (first tries that were lost, and retries)."""
    done = 0
    while True:
        ids = webhooks.webhook_deliveries_claim(limit=webhooks.CLAIM_BATCH)
        for delivery_id in ids:
            try:
                webhooks.webhook_delivery_attempt(delivery_id=delivery_id)
            except Exception:
                # The claim's lease brings the row back later.
                logger.exception("Webhook delivery %s failed unexpectedly", delivery_id)
        done += len(ids)
        if len(ids) < webhooks.CLAIM_BATCH:
            return done


@shared_task
def relay_register_webhook(line_id: str) -> str | None:
    line = Line.objects.filter(pk=line_id, is_active=True).first()
    if line is None:
        return None
    try:
        return inbound.relay_webhook_register(line=line)
    except RelayError as exc:
        # The poll registers it again until the relay accepts.
        logger.warning("Could not register the relay webhook for line %s: %s", line_id, exc)
        return None


@shared_task
def relay_poll_lines() -> int:
    """Fan out one poll per active line, so a slow relay delays only its own line."""
    line_ids = list(Line.objects.filter(is_active=True).values_list("pk", flat=True))
    for line_id in line_ids:
        relay_poll_line.delay(line_id)
    return len(line_ids)


@shared_task
def relay_poll_line(line_id: str) -> int | None:
    line = Line.objects.filter(pk=line_id, is_active=True).select_related("workspace").first()
    if line is None:
        return None
    try:
        return inbound.relay_poll_line(line=line)
    except RelayError as exc:
        logger.warning("Polling line %s failed: %s", line_id, exc.message)
        return None


# Signals from lower apps, connected in MessagingConfig.ready().


def _on_line_saved(sender, line_id, created=False, workspace_id=None, **kwargs):
    # Sent after the line's commit; registering talks to the relay, so it is a task.
    relay_register_webhook.delay(line_id)


def _on_lead_availability_updated(sender, workspace, results, **kwargs):
    # Sent inside the transaction that wrote the results: the outbox rows commit with them.
    webhooks.lead_availability_emit(workspace=workspace, results=results)


def connect_signals() -> None:
    from leads.signals import lead_availability_updated
    from lines.signals import line_saved

    line_saved.connect(_on_line_saved, dispatch_uid="messaging.relay_register_webhook")
    lead_availability_updated.connect(
        _on_lead_availability_updated, dispatch_uid="messaging.lead_availability_webhook"
    )
