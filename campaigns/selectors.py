"""Reads on campaigns, scoped to a workspace. Stats are counted from the messages
themselves (no counters to drift under concurrent updates), for a whole page of
campaigns in two grouped queries."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, Prefetch, Q, QuerySet

from campaigns.models import ApiTool, Campaign, Step
from campaigns.sequencing import AFTER_FAILURE
from messaging.models import InboundMessage, Message
from tuco.errors import NotFound
from tuco.ids import looks_like_id

STAT_KEYS = (
    "total",
    "pending",
    "sent",
    "delivered",
    "opened",
    "replied",
    "failed",
    "fallback",
    "cancelled",
    "stalled",
)
# Message status -> the stats it counts towards (sent includes what went further).
_COUNTS_AS = {
    "pending": ("pending",),
    "scheduled": ("pending",),
    "sending": ("pending",),
    "sent": ("sent",),
    "delivered": ("sent", "delivered"),
    "read": ("sent", "delivered", "opened"),
    "failed": ("failed",),
    "fallback": ("fallback",),
    "cancelled": ("cancelled",),
}


def campaign_list(*, workspace, status: str | None = None) -> QuerySet[Campaign]:
    campaigns = Campaign.objects.filter(workspace=workspace)
    if status:
        campaigns = campaigns.filter(status=status)
    return campaigns.order_by("-created_at", "-pk").prefetch_related(
        Prefetch("steps", queryset=Step.objects.order_by("position")), "lines"
    )


def campaign_get(*, workspace, campaign_id) -> Campaign:
    campaign = None
    if looks_like_id(campaign_id):
        campaign = campaign_list(workspace=workspace).filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFound("Campaign not found")
    return campaign


def campaign_stats(campaign_ids) -> dict[str, dict[str, int]]:
    """{campaign id: {total, pending, sent, delivered, opened, replied, failed, fallback,
    cancelled}} for these campaigns, in two queries whatever their number."""
    ids = list(campaign_ids)
    stats = defaultdict(lambda: dict.fromkeys(STAT_KEYS, 0))
    if not ids:
        return {}
    rows = (
        Message.objects.filter(campaign_id__in=ids)
        .values_list("campaign_id", "status")
        .annotate(n=Count("pk"), stalled=Count("pk", filter=Q(cancel_reason=AFTER_FAILURE)))
        .order_by()
    )
    for campaign_id, status, n, stalled in rows:
        entry = stats[campaign_id]
        entry["total"] += n
        for key in _COUNTS_AS.get(status, ()):
            entry[key] += n
        if status == "cancelled" and stalled:
            # Cancelled behind a failed step: `retry_failed` brings these back, so
            # they are reported as stalled rather than cancelled.
            entry["cancelled"] -= stalled
            entry["stalled"] += stalled
    # A lead counts as replied in the campaign whose message its reply answers (the
    # latest message sent to it, see messaging.inbound): a lead in two campaigns
    # is credited to one, and a reply to anything else is not a campaign's reply.
    replied = (
        InboundMessage.objects.filter(in_reply_to__campaign_id__in=ids, lead__isnull=False)
        .values_list("in_reply_to__campaign_id")
        .annotate(n=Count("lead_id", distinct=True))
        .order_by()
    )
    for campaign_id, n in replied:
        stats[campaign_id]["replied"] = n
    return {campaign_id: stats[campaign_id] for campaign_id in ids}


def api_tool_list(*, workspace) -> QuerySet[ApiTool]:
    return ApiTool.objects.filter(workspace=workspace).order_by("name")
