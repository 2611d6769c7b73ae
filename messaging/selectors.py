"""Reads on the outbox, scoped to a workspace."""

from django.db.models import QuerySet

from messaging.models import FallbackConfig, Message
from tuco.errors import NotFound


def message_list(
    *,
    workspace,
    status: str = "",
    lead_id: str = "",
    line_id: str = "",
    campaign_id: str = "",
    batch_id: str = "",
) -> QuerySet[Message]:
    """The workspace's messages, newest first; each given (non-empty) value filters."""
    filters = {
        "status": status,
        "lead_id": lead_id,
        "line_id": line_id,
        "campaign_id": campaign_id,
        "batch_id": batch_id,
    }
    rows = Message.objects.filter(
        workspace=workspace, **{column: value for column, value in filters.items() if value}
    )
    return rows.select_related("line").order_by("-created_at", "-id")


def message_get(*, workspace, message_id: str) -> Message:
    message = (
        Message.objects.filter(workspace=workspace, pk=str(message_id))
        .select_related("line")
        .first()
    )
    if message is None:
        raise NotFound("Message not found")
    return message


def fallback_config_get(*, workspace) -> FallbackConfig:
    """The workspace's Twilio settings (an unsaved empty one when never set)."""
    return FallbackConfig.objects.filter(workspace=workspace).first() or FallbackConfig(
        workspace=workspace
    )
