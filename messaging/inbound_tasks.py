"""Celery tasks for inbound events: registering the relay's webhook for a line, and
polling the relays for events their webhooks missed."""

import logging

from celery import shared_task

from lines.models import Line
from lines.relay import RelayError
from messaging import inbound
from tuco.crypto import decrypt, encrypt

logger = logging.getLogger(__name__)


@shared_task
def relay_register_webhook(line_id: str) -> list[str] | None:
    """Bring the registrations on a line's relay up to date after the line changed
    (created, deactivated, its callback token rotated)."""
    line = Line.objects.filter(pk=line_id).first()
    if line is None:
        return None
    return relay_webhooks_sync(line.server_url, encrypt(line.relay_password))


@shared_task
def relay_webhooks_sync(server_url: str, sealed_password: str) -> list[str] | None:
    """Bring the registrations on one relay up to date: also for a relay a line left
    (deleted, or pointed elsewhere). The password travels encrypted, as it is stored."""
    try:
        return inbound.relay_webhooks_sync(
            server_url=server_url, relay_password=decrypt(sealed_password)
        )
    except RelayError as exc:
        # The lines' polls sync their relays again until the relay accepts.
        logger.warning("Could not update the webhooks of the relay at %s: %s", server_url, exc)
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


# Connected to lines.signals.line_saved in MessagingConfig.ready().


def on_line_saved(sender, line_id, created=False, workspace_id=None, left_relay=None, **kwargs):
    # Sent after the line's commit; registering talks to the relay, so it is a task.
    relay_register_webhook.delay(line_id)
    if left_relay is not None:
        relay_webhooks_sync.delay(*left_relay)


# Connected to lines.signals.line_deleted in MessagingConfig.ready().


def on_line_deleted(sender, line_id, workspace_id=None, left_relay=None, **kwargs):
    if left_relay is not None:
        relay_webhooks_sync.delay(*left_relay)
