"""Celery tasks for inbound events: registering the relay's webhook for a line, and
polling the relays for events their webhooks missed."""

import logging

from celery import shared_task

from lines.models import Line
from lines.relay import RelayError
from messaging import inbound

logger = logging.getLogger(__name__)


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


# Connected to lines.signals.line_saved in MessagingConfig.ready().


def on_line_saved(sender, line_id, created=False, workspace_id=None, **kwargs):
    # Sent after the line's commit; registering talks to the relay, so it is a task.
    relay_register_webhook.delay(line_id)
