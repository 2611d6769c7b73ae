"""Reads on the outbox, scoped to a workspace."""

from django.db.models import QuerySet

from messaging.models import FallbackConfig, Message
from tuco.errors import NotFound

LIST_FILTERS = {
    "status": "status",
    "leadId": "lead_id",
    "fromLineId": "line_id",
    "campaignId": "campaign_id",
    "batchId": "batch_id",
}


def message_list(*, workspace, filters: dict | None = None) -> QuerySet[Message]:
    rows = Message.objects.filter(workspace=workspace)
    for key, column in LIST_FILTERS.items():
        value = (filters or {}).get(key)
        if value not in (None, ""):
            rows = rows.filter(**{column: value})
    return rows.order_by("-created_at", "-id")


def message_get(*, workspace, message_id: str) -> Message:
    message = Message.objects.filter(workspace=workspace, pk=str(message_id)).first()
    if message is None:
        raise NotFound("Message not found")
    return message


def fallback_config_get(*, workspace) -> FallbackConfig:
    """The workspace's Twilio settings (an unsaved empty one when never set)."""
    return FallbackConfig.objects.filter(workspace=workspace).first() or FallbackConfig(
        workspace=workspace
    )
